//! What a skill asks for beyond the default: the list a trust prompt
//! shows and a `TRUST_REQUIRED` error names.
//!
//! The default is what a prompt, workflow, conversation or agent skill
//! does with nothing extra: model calls, its own folder's references, the
//! workspace's context files. Anything else is an [`Ask`]: a program (a
//! command or session skill, a tool script), an MCP server's tools,
//! network, a path to read outside the workspace, a path to write,
//! variables of the daemon's environment. Computed from the parsed skill,
//! never from what a run happens to do.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skillkernel_sandbox::proxy::NetworkGrant;
use skillkernel_sandbox::ManifestGrants;

use crate::model::{Skill, SkillBody};
use crate::tools::ToolSource;

/// One thing a skill asks for beyond the default.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "what", rename_all = "snake_case")]
pub enum Ask {
    /// Runs a program in the sandbox (a command or session skill, or its
    /// fallback): the command line.
    Program(String),
    /// Offers the model a script of its folder as a tool: the path.
    Script(PathBuf),
    /// Offers the model a configured MCP server's tools: the server.
    McpTools(String),
    /// Network: `any host`, or the host patterns.
    Network(String),
    /// Reads a path outside the workspace.
    Read(PathBuf),
    /// Writes a path (besides the workspace a program always has).
    Write(PathBuf),
    /// Sees a variable of the daemon's environment.
    Env(String),
    /// A manifest whose permissions do not parse: it cannot run anyway,
    /// and is never trusted blind.
    Unreadable(String),
}

impl std::fmt::Display for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ask::Program(cmd) => write!(f, "runs the program `{cmd}`"),
            Ask::Script(p) => write!(f, "runs the script `{}` as a tool", p.display()),
            Ask::McpTools(server) => write!(f, "uses the tools of the MCP server `{server}`"),
            Ask::Network(what) => write!(f, "network access: {what}"),
            Ask::Read(p) => write!(f, "reads {} (outside the workspace)", p.display()),
            Ask::Write(p) => write!(f, "writes {}", p.display()),
            Ask::Env(var) => write!(f, "sees the environment variable {var}"),
            Ask::Unreadable(why) => write!(f, "permissions that do not parse ({why})"),
        }
    }
}

/// What `skill` asks for beyond the default, in a stable order, for a
/// workspace at `workspace`. Empty: it needs no trust.
pub fn asks_of(skill: &Skill, workspace: &Path) -> Vec<Ask> {
    let mut asks = Vec::new();
    match &skill.body {
        SkillBody::Command(c) => {
            let mut cur = Some(c);
            while let Some(c) = cur {
                asks.push(Ask::Program(command_line(&c.command, &c.args)));
                permissions(&c.policy, workspace, &mut asks);
                cur = c.fallback.as_deref();
            }
        }
        SkillBody::Session(s) => {
            asks.push(Ask::Program(command_line(&s.command, &s.args)));
            permissions(&s.policy, workspace, &mut asks);
        }
        _ => {}
    }
    for tool in &skill.tools.tools {
        match tool {
            ToolSource::Script { path, .. } => asks.push(Ask::Script(path.clone())),
            ToolSource::Mcp { server, .. } => asks.push(Ask::McpTools(server.clone())),
            ToolSource::Skill { .. } | ToolSource::References { .. } => {}
        }
    }
    asks.sort();
    asks.dedup();
    asks
}

fn command_line(command: &str, args: &[String]) -> String {
    std::iter::once(command)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn permissions(
    policy: &serde_json::Map<String, serde_json::Value>,
    workspace: &Path,
    asks: &mut Vec<Ask>,
) {
    let grants = match ManifestGrants::from_manifest(policy, workspace) {
        Ok(g) => g,
        Err(e) => {
            asks.push(Ask::Unreadable(e.to_string()));
            return;
        }
    };
    match &grants.network {
        NetworkGrant::Nothing => {}
        NetworkGrant::Hosts(hosts) if hosts.is_empty() => {}
        NetworkGrant::Everything => asks.push(Ask::Network("any host".into())),
        NetworkGrant::Hosts(hosts) => {
            let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            asks.push(Ask::Network(names.join(", ")));
        }
    }
    asks.extend(
        grants
            .read
            .into_iter()
            .filter(|p| !inside(p, workspace))
            .map(Ask::Read),
    );
    asks.extend(grants.write.into_iter().map(Ask::Write));
    asks.extend(grants.env.into_iter().map(Ask::Env));
}

/// Whether `path` stays inside `workspace` once `..` is taken lexically
/// (the sandbox resolves links; a link out of the workspace is the
/// sandbox's deny list's to refuse).
fn inside(path: &Path, workspace: &Path) -> bool {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return false;
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.starts_with(workspace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format;
    use crate::model::Origin;

    fn skill(yaml: &str) -> Skill {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skill.yaml");
        std::fs::write(&path, yaml).unwrap();
        format::load_file(&path, Origin::Project).unwrap()
    }

    #[test]
    fn a_prompt_skill_asks_for_nothing() {
        let s = skill("name: plain\nversion: 1.0.0\ndescription: d\ntemplate: 'Say {{ input }}'\n");
        assert!(asks_of(&s, Path::new("/work/nb")).is_empty());
    }

    #[test]
    fn a_command_skill_asks_for_its_program_network_paths_and_env() {
        let s = skill(
            "name: fetch\nversion: 1.0.0\ndescription: d\ntype: command\ncommand: curl\nargs: [-s, example.org]\n\
             permissions:\n  network: true\n  read: [/home/ana/.ssh, data, ../../etc]\n  write: [out]\n  env: [GITHUB_TOKEN]\n",
        );
        let asks = asks_of(&s, Path::new("/work/nb"));
        let text: Vec<String> = asks.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            text,
            [
                "runs the program `curl -s example.org`",
                "network access: any host",
                "reads /home/ana/.ssh (outside the workspace)",
                "reads /work/nb/../../etc (outside the workspace)",
                "writes /work/nb/out",
                "sees the environment variable GITHUB_TOKEN",
            ]
        );
    }
}
