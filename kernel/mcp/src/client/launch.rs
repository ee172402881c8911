//! Launching a stdio server inside the sandbox, under the policy its
//! `[mcp.servers.NAME]` section gives: the system paths, the server's
//! own install and its interpreter's
//! ([`toolchains::program_roots`]: where a virtualenv or `node_modules`
//! keeps its code), the working directory, and only what the section
//! adds — no network unless `network = true`.

use std::path::{Path, PathBuf};

use skillkernel_sandbox::audit::Subject;
use skillkernel_sandbox::resident::ResidentProcess;
use skillkernel_sandbox::{toolchains, Sandbox, SandboxPolicy};

use super::config::ServerConfig;

/// Starts server `name`'s program.
pub async fn start(
    sandbox: &Sandbox,
    name: &str,
    config: &ServerConfig,
) -> Result<ResidentProcess, String> {
    let command = config.command.as_deref().unwrap_or_default();
    let program = find_program(command, sandbox.working_dir()).ok_or_else(|| {
        format!("its command `{command}` is not a file and not on the daemon's PATH")
    })?;
    let mut argv = vec![program.display().to_string()];
    argv.extend(config.args.iter().cloned());
    let policy = policy(sandbox.working_dir(), config, &program);
    let subject = Subject {
        source: "mcp-server",
        skill: Some(name.to_owned()),
        version: None,
        own_dir: None,
    };
    sandbox
        .start_resident(&subject, &policy, &argv)
        .await
        .map_err(|e| format!("cannot launch `{}`: {e}", config.target()))
}

/// The policy server `config` runs under.
pub fn policy(workdir: &Path, config: &ServerConfig, program: &Path) -> SandboxPolicy {
    let mut policy = SandboxPolicy::for_workspace(workdir);
    let inside = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            workdir.join(p)
        }
    };
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    policy
        .read
        .extend(toolchains::program_roots(program, &home));
    policy.read.extend(config.read.iter().map(inside));
    policy.write.extend(config.write.iter().map(inside));
    config.network.apply_to(&mut policy);
    policy.env_allow.extend(config.env_allow.iter().cloned());
    policy.env = config.env.clone();
    policy
}

/// `command` as an absolute path: itself when it names a file (a
/// relative one inside `workdir`, where the program starts), else the
/// first match on the daemon's `PATH`.
fn find_program(command: &str, workdir: &Path) -> Option<PathBuf> {
    if command.contains('/') {
        let given = workdir.join(command);
        return given.is_file().then_some(given);
    }
    toolchains::find_on_path(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_in_a_bin_folder_may_read_its_install_and_nothing_above() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        let program = venv.join("bin/mcp-server-time");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        let config = ServerConfig {
            command: Some(program.display().to_string()),
            read: vec![PathBuf::from("data")],
            network: skillkernel_sandbox::proxy::NetworkGrant::Nothing,
            ..ServerConfig::default()
        };
        let work = dir.path().join("work");
        let policy = policy(&work, &config, &program);
        let venv = std::fs::canonicalize(&venv).unwrap();
        assert!(policy
            .read
            .iter()
            .any(|p| std::fs::canonicalize(p).ok().as_ref() == Some(&venv)));
        assert!(policy.read.contains(&work.join("data")));
        assert!(!policy.read.contains(&dir.path().to_path_buf()));
        assert!(!policy.network);
        assert_eq!(
            find_program(&program.display().to_string(), &work),
            Some(program.clone())
        );
        assert_eq!(find_program("surely-no-such-program-here", &work), None);
        // A relative path is inside the working directory, where it runs.
        assert_eq!(
            find_program("venv/bin/mcp-server-time", dir.path()),
            Some(dir.path().join("venv/bin/mcp-server-time"))
        );
        // A script's interpreter, wherever it is installed, may be read.
        let python = dir.path().join("pyenv/versions/3.11/bin/python3");
        std::fs::create_dir_all(python.parent().unwrap()).unwrap();
        std::fs::write(&python, "").unwrap();
        std::fs::write(&program, format!("#!{}\nimport x\n", python.display())).unwrap();
        let policy = super::policy(&work, &config, &program);
        assert!(policy
            .read
            .contains(&dir.path().join("pyenv/versions/3.11")));
        // (`#!/usr/bin/env` and folders right in the home directory:
        // `toolchains::tests`.)
    }
}
