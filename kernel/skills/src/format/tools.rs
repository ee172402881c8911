//! The tools a skill declares: `tools` and `max_steps` in a native
//! manifest, the `scripts/` and `references/` of an Agent Skill.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::doc::Obj;
use super::validate;
use crate::error::LoadError;
use crate::external::is_server_name;
use crate::tools::{tool_name, ToolSource, Toolbox};

/// Keys of one entry of `tools`.
pub const TOOL_KEYS: &[&str] = &["skill", "description", "mcp", "tools"];

const REMEDY: &str = "list the skills the model may call: `tools: [summarize, {skill: translate, description: \"…\"}]`, and MCP servers: `{mcp: time}`";

/// `tools`, `max_steps` and `tool_timeout_secs` of a native manifest.
pub fn native(root: &Obj<'_>) -> Result<Toolbox, LoadError> {
    let mut toolbox = Toolbox::default();
    let Some(items) = root.list("tools")? else {
        for key in ["max_steps", "tool_timeout_secs", "tool_choice"] {
            if root.has(key) {
                return Err(root.error(
                    key,
                    format!("`{key}` limits the tool loop, and this skill has no `tools`"),
                    REMEDY,
                ));
            }
        }
        return Ok(toolbox);
    };
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("{}[{i}]", root.field("tools"));
        let source = match item {
            Value::String(name) => ToolSource::Skill {
                name: name.clone(),
                description: None,
            },
            Value::Object(_) => {
                let o = Obj::new(root.doc, &field, item)?;
                o.deny_unknown(TOOL_KEYS, "a tool")?;
                match o.str("mcp")? {
                    Some(server) => mcp_entry(&o, server)?,
                    None => {
                        let name = o.req_str(
                            "skill",
                            "name the skill: `skill: summarize`, or an MCP server: `mcp: time`",
                        )?;
                        for key in ["tools"] {
                            if o.has(key) {
                                return Err(o.error(
                                    key,
                                    format!("`{key}` belongs to an `mcp` tool"),
                                    REMEDY,
                                ));
                            }
                        }
                        ToolSource::Skill {
                            name: name.to_owned(),
                            description: o.str("description")?.map(str::to_owned),
                        }
                    }
                }
            }
            _ => {
                return Err(root.doc.error(
                    &field,
                    "a tool is a skill's name, `{skill: NAME}` or `{mcp: SERVER}`",
                    REMEDY,
                ))
            }
        };
        let key = match &source {
            ToolSource::Skill { name, .. } => {
                validate::check_name(&root.doc, &field, name)?;
                name.clone()
            }
            ToolSource::Mcp { server, .. } => format!("mcp:{server}"),
            _ => unreachable!("native tools are skills or MCP servers"),
        };
        if !seen.insert(key.clone()) {
            return Err(root.doc.error(
                &field,
                format!("`{}` is listed twice", key.trim_start_matches("mcp:")),
                "list each tool once",
            ));
        }
        toolbox.tools.push(source);
    }
    if toolbox.tools.is_empty() {
        return Err(root.error("tools", "`tools` lists no tools", REMEDY));
    }
    match root.u64("max_steps")? {
        Some(0) => {
            return Err(root.error(
                "max_steps",
                "`max_steps` is 0",
                "allow at least one model call: `max_steps: 1` or more",
            ))
        }
        Some(n) => toolbox.max_steps = n.min(u64::from(u32::MAX)) as u32,
        None => {}
    }
    toolbox.first_call_required = match root.str("tool_choice")? {
        None | Some("auto") => false,
        Some("required") => true,
        Some(other) => return Err(root.error(
            "tool_choice",
            format!("`tool_choice` is `{other}`; it must be `auto` or `required`"),
            "`required`: the first step must call a tool; `auto` (the default): the model decides",
        )),
    };
    match root.u64("tool_timeout_secs")? {
        Some(0) => {
            return Err(root.error(
                "tool_timeout_secs",
                "`tool_timeout_secs` is 0",
                "give each tool call at least a second",
            ))
        }
        Some(n) => toolbox.tool_timeout = Duration::from_secs(n),
        None => {}
    }
    Ok(toolbox)
}

/// `{mcp: SERVER, tools: [TOOL, …]}`: the server's tools named, or all.
fn mcp_entry(o: &Obj<'_>, server: &str) -> Result<ToolSource, LoadError> {
    if o.has("skill") || o.has("description") {
        return Err(o.error(
            "mcp",
            "an `mcp` tool has no `skill` or `description`",
            "the server describes its tools; write `{mcp: SERVER}` or `{mcp: SERVER, tools: [TOOL]}`",
        ));
    }
    if !is_server_name(server) {
        return Err(o.error(
            "mcp",
            format!("`{server}` is not an MCP server's name"),
            "name a server of `[mcp.servers]`: letters, digits, `-` and `_`",
        ));
    }
    let tools = o.str_list("tools")?;
    if o.has("tools") && tools.is_empty() {
        return Err(o.error(
            "tools",
            "`tools` lists no tools",
            "leave `tools` out to offer all the server's tools",
        ));
    }
    if let Some(empty) = tools.iter().position(|t| t.trim().is_empty()) {
        return Err(o.error(
            "tools",
            format!("`tools[{empty}]` is empty"),
            "name a tool of the server, as `%mcp tools SERVER` lists them",
        ));
    }
    for (i, tool) in tools.iter().enumerate() {
        if tools[..i].contains(tool) {
            return Err(o.error(
                "tools",
                format!("`{tool}` is listed twice"),
                "list each tool once",
            ));
        }
    }
    Ok(ToolSource::Mcp {
        server: server.to_owned(),
        tools,
    })
}

/// `mcp__SERVER` and `mcp__SERVER__TOOL` entries of `allowed-tools` (the
/// names Claude Code gives MCP tools), one source per server.
fn mcp_allowed(allowed: &[String]) -> Vec<ToolSource> {
    let mut sources: Vec<ToolSource> = Vec::new();
    for entry in entries(allowed) {
        let Some(rest) = entry.strip_prefix("mcp__") else {
            continue;
        };
        let (server, tool) = match rest.split_once("__") {
            // `mcp__SERVER__*` (Claude Code's wildcard): all its tools.
            Some((server, "*")) => (server, None),
            Some((server, tool)) => (server, Some(tool)),
            None => (rest, None),
        };
        if !is_server_name(server) || tool.is_some_and(str::is_empty) {
            tracing::warn!(
                entry,
                "an `allowed-tools` entry names no MCP server; it is ignored"
            );
            continue;
        }
        let at = sources
            .iter()
            .position(|s| matches!(s, ToolSource::Mcp { server: s, .. } if s == server));
        match (at, tool) {
            (None, tool) => sources.push(ToolSource::Mcp {
                server: server.to_owned(),
                tools: tool.map(str::to_owned).into_iter().collect(),
            }),
            (Some(i), Some(tool)) => {
                if let ToolSource::Mcp { tools, .. } = &mut sources[i] {
                    // An entry for the whole server keeps all its tools.
                    if !tools.is_empty() {
                        tools.push(tool.to_owned());
                    }
                }
            }
            (Some(i), None) => {
                if let ToolSource::Mcp { tools, .. } = &mut sources[i] {
                    tools.clear();
                }
            }
        }
    }
    sources
}

/// An Agent Skill's tools: each file under `scripts/` that `allowed-tools`
/// permits (all of them when it is not given), and — when there is a
/// loop, or `allowed-tools` names `Read` — `read_reference` over
/// `references/`, and the MCP servers' tools it names (`mcp__SERVER`,
/// `mcp__SERVER__TOOL`). `metadata.max_steps` bounds the loop;
/// `metadata.tool_choice: required` makes the first step call a tool.
pub fn agent(
    resources: &[PathBuf],
    allowed: &[String],
    metadata: &BTreeMap<String, String>,
) -> Toolbox {
    let max_steps = metadata.get("max_steps").map(String::as_str);
    let mut toolbox = Toolbox::default();
    // Top-level files of `scripts/` only: a helper module in a subfolder
    // is not a tool.
    for path in resources
        .iter()
        .filter(|p| p.starts_with("scripts") && p.components().count() == 2)
    {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = Path::new(&file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = tool_name(&stem);
        let taken = name == "read_reference"
            || toolbox
                .tools
                .iter()
                .any(|t| matches!(t, ToolSource::Script { name: n, .. } if *n == name));
        if taken {
            tracing::warn!(script = %path.display(), "a script's tool name is taken by another tool; it is not offered");
            continue;
        }
        if allowed.is_empty() || allows(allowed, &file, &name) {
            toolbox.tools.push(ToolSource::Script {
                name,
                path: path.clone(),
            });
        }
    }
    toolbox.tools.extend(mcp_allowed(allowed));
    let references: Vec<PathBuf> = resources
        .iter()
        .filter(|p| p.starts_with("references"))
        .cloned()
        .collect();
    let read = allowed
        .iter()
        .any(|t| t == "Read" || t.starts_with("Read("));
    if !references.is_empty() && (!toolbox.tools.is_empty() || read) {
        toolbox
            .tools
            .push(ToolSource::References { files: references });
    }
    if let Some(n) = max_steps
        .and_then(|n| n.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
    {
        toolbox.max_steps = n;
    }
    toolbox.first_call_required = !toolbox.is_empty()
        && metadata
            .get("tool_choice")
            .is_some_and(|c| c.trim() == "required");
    toolbox
}

/// `allowed-tools` lets a script run when it names `Bash` (any command),
/// `Bash(…)` mentioning the script's file, or the tool by name.
fn allows(allowed: &[String], file: &str, name: &str) -> bool {
    entries(allowed).iter().any(|t| {
        let command = t
            .strip_prefix("Bash(")
            .and_then(|rest| rest.strip_suffix(')'));
        t == "Bash"
            || t == "Bash(*)"
            || t == name
            || t == file
            || command.is_some_and(|c| {
                c.split(|ch: char| ch.is_whitespace() || ch == ':')
                    .any(|word| Path::new(word).file_name().is_some_and(|f| f == file))
            })
    })
}

/// The entries of `allowed-tools`: its words, with `Bash(git add:*)`
/// kept whole (Claude Code writes a command's spaces inside the
/// parentheses).
fn entries(words: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for word in words {
        match out.last_mut() {
            Some(last) if open => {
                last.push(' ');
                last.push_str(word);
            }
            _ => out.push(word.clone()),
        }
        let last = out.last().map(String::as_str).unwrap_or("");
        open = last.matches('(').count() > last.matches(')').count();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn allowed_tools_name_mcp_servers_and_their_tools_as_claude_code_does() {
        let allowed: Vec<String> =
            "mcp__time__get_current_time mcp__git mcp__git__git_log mcp__web__* mcp__ Read"
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        let toolbox = agent(&[], &allowed, &BTreeMap::new());
        assert_eq!(
            toolbox.tools,
            [
                ToolSource::Mcp {
                    server: "time".into(),
                    tools: vec!["get_current_time".into()]
                },
                // The whole server was named: all its tools.
                ToolSource::Mcp {
                    server: "git".into(),
                    tools: vec![]
                },
                ToolSource::Mcp {
                    server: "web".into(),
                    tools: vec![]
                },
            ]
        );
    }

    #[test]
    fn scripts_become_tools_as_allowed_tools_permits_and_references_join_a_loop() {
        let files = paths(&[
            "scripts/count_words.py",
            "scripts/other.sh",
            "references/a.md",
            "assets/x.png",
        ]);
        let none_set = BTreeMap::new();
        let all = agent(&files, &[], &none_set);
        assert_eq!(all.tools.len(), 3);
        assert!(matches!(&all.tools[0], ToolSource::Script { name, .. } if name == "count_words"));
        assert!(
            matches!(&all.tools[2], ToolSource::References { files } if files == &paths(&["references/a.md"]))
        );
        let meta = BTreeMap::from([
            ("max_steps".to_string(), "3".to_string()),
            ("tool_choice".to_string(), "required".to_string()),
        ]);
        let written: Vec<String> = "Bash(python3 scripts/count_words.py:*) Read"
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let some = agent(&files, &written, &meta);
        assert!(some.first_call_required);
        assert_eq!(some.tools.len(), 2, "{:?}", some.tools);
        assert_eq!(some.max_steps, 3);
        let none = agent(&paths(&["references/a.md"]), &[], &none_set);
        assert!(none.is_empty(), "references alone make no loop");
        let read = agent(&paths(&["references/a.md"]), &["Read".into()], &none_set);
        assert_eq!(read.tools.len(), 1);
    }
}
