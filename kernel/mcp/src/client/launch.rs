//! Launching a stdio server inside the sandbox, under the policy its
//! `[mcp.servers.NAME]` section gives: the system paths, the server's
//! own install (the folder above the `bin/` its command is in, where a
//! virtualenv or `node_modules` keeps its code), the working directory,
//! and only what the section adds — no network unless `network = true`.

use std::path::{Path, PathBuf};

use skillkernel_sandbox::audit::Subject;
use skillkernel_sandbox::resident::ResidentProcess;
use skillkernel_sandbox::{Sandbox, SandboxPolicy};

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
    policy.read.extend(install_dirs(program));
    if let Some(interpreter) = interpreter_of(program) {
        for dir in install_dirs(&interpreter) {
            if !policy.read.contains(&dir) {
                policy.read.push(dir);
            }
        }
    }
    policy.read.extend(config.read.iter().map(inside));
    policy.write.extend(config.write.iter().map(inside));
    policy.network = config.network;
    policy.env_allow.extend(config.env_allow.iter().cloned());
    policy.env = config.env.clone();
    policy
}

/// `command` as an absolute path: itself when it names a file (a
/// relative one inside `workdir`, where the program starts), else the
/// first match on the daemon's `PATH`.
fn find_program(command: &str, workdir: &Path) -> Option<PathBuf> {
    let given = workdir.join(command);
    if command.contains('/') {
        return given.is_file().then_some(given);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// The interpreter a script names on its `#!` line (`#!/usr/bin/env
/// node` looks `node` up on the daemon's `PATH`): a virtualenv's Python
/// may live in the home directory (pyenv), which the sandbox does not
/// open otherwise.
fn interpreter_of(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line);
    let line = line.lines().next()?;
    let mut words = line.split_whitespace();
    let first = words.next()?;
    if Path::new(first).file_name().is_some_and(|f| f == "env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        return find_program(name, Path::new("/"));
    }
    Some(PathBuf::from(first))
}

/// Where the program's code lives: the folder above its `bin/` (or
/// `.bin/`), both as written and with links resolved — a virtualenv's
/// `bin/python` links out of it, and its packages stay beside the link.
///
/// Never the root, the home directory or a folder right in it
/// (`~/.local`, `~/.cargo`: they hold more than one program's code, and
/// credentials): a program there gets its `bin/` only.
fn install_dirs(program: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let resolved = std::fs::canonicalize(program).ok();
    let home = home();
    let too_wide = |dir: &Path| {
        dir.parent().is_none()
            || home
                .as_deref()
                .is_some_and(|h| dir == h || dir.parent() == Some(h))
    };
    for path in std::iter::once(program.to_path_buf()).chain(resolved) {
        let Some(bin) = path.parent() else { continue };
        let prefix = match bin.file_name().and_then(|n| n.to_str()) {
            Some("bin" | ".bin") => bin.parent().unwrap_or(bin),
            _ => bin,
        };
        let prefix = if too_wide(prefix) { bin } else { prefix };
        if too_wide(prefix) {
            continue;
        }
        if !dirs.iter().any(|d: &PathBuf| d == prefix) {
            dirs.push(prefix.to_path_buf());
        }
    }
    dirs
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
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
            network: false,
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
        std::fs::write(&program, "#!/usr/bin/env -S sh -e\n").unwrap();
        assert_eq!(interpreter_of(&program), find_program("sh", Path::new("/")));
        // A program in ~/.cargo/bin may read its bin/, not ~/.cargo.
        if let Some(home) = home() {
            let dirs = install_dirs(&home.join(".cargo/bin/some-server"));
            assert!(!dirs.contains(&home.join(".cargo")), "{dirs:?}");
            assert!(!dirs.contains(&home), "{dirs:?}");
        }
    }
}
