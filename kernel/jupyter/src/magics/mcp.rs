//! `%mcp`: the MCP servers of `[mcp.servers]` — their state, their tools,
//! and calling one from a cell. `skillctl mcp servers|tools` asks the
//! same of the kernel over `mcp_request` ([`crate::mcp_request`]).

use serde_json::{json, Value};
use skillkernel_mcp::client::{ServerStatus, ServerTools};
use skillkernel_protocol::content::DisplayData;

use super::status::cell;
use crate::errors::KernelError;
use crate::exec_context::output::markdown_bundle;
use crate::exec_context::ExecContext;

pub const USAGE: &str = "%mcp [servers | tools [SERVER] | call SERVER.TOOL [JSON]]";

pub(super) async fn run(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let args = args.trim();
    let (word, rest) = args
        .split_once(char::is_whitespace)
        .map_or((args, ""), |(w, r)| (w, r.trim()));
    match (word, rest) {
        ("" | "servers", "") => {
            let servers = ctx.shared.mcp_clients().status();
            show(ctx, &servers_markdown(&servers), json!(servers)).await;
            Ok(())
        }
        ("tools", server) if !server.contains(char::is_whitespace) => {
            let clients = std::sync::Arc::clone(ctx.shared.mcp_clients());
            let server = (!server.is_empty()).then_some(server);
            let listed = tokio::select! {
                listed = clients.catalog(server) => listed.map_err(KernelError::Mcp)?,
                _ = ctx.cancel.cancelled() => return Err(KernelError::Interrupted),
            };
            show(ctx, &tools_markdown(&listed), json!(listed)).await;
            Ok(())
        }
        ("call", call) if !call.is_empty() => self::call(ctx, call).await,
        _ => Err(KernelError::usage(
            "mcp",
            format!("unknown arguments `{args}`"),
            USAGE,
        )),
    }
}

async fn show(ctx: &mut ExecContext<'_>, markdown: &str, json: Value) {
    let mut data = markdown_bundle(markdown);
    data.insert("application/json".into(), json);
    ctx.out.display(DisplayData::new(data)).await;
}

/// `%mcp call SERVER.TOOL {json}`.
async fn call(ctx: &mut ExecContext<'_>, call: &str) -> Result<(), KernelError> {
    let (target, arguments) = call
        .split_once(char::is_whitespace)
        .map_or((call, ""), |(t, a)| (t, a.trim()));
    let Some((server, tool)) = target.split_once('.') else {
        return Err(KernelError::usage(
            "mcp",
            format!("`{target}` is not SERVER.TOOL (e.g. `time.get_current_time`)"),
            USAGE,
        ));
    };
    let arguments: Value = if arguments.is_empty() {
        json!({})
    } else {
        serde_json::from_str(arguments).map_err(|e| {
            KernelError::usage("mcp", format!("the arguments are not JSON: {e}"), USAGE)
        })?
    };
    if !arguments.is_object() {
        return Err(KernelError::usage(
            "mcp",
            "the arguments must be a JSON object, like {\"timezone\": \"UTC\"}",
            USAGE,
        ));
    }
    let clients = std::sync::Arc::clone(ctx.shared.mcp_clients());
    let outcome = clients
        .call_tool(server, tool, arguments, ctx.cancel.child_token())
        .await
        .map_err(|e| {
            if ctx.cancel.is_cancelled() {
                KernelError::Interrupted
            } else {
                KernelError::Mcp(e)
            }
        })?;
    let mut data = markdown_bundle(&result_markdown(&outcome.text));
    data.insert("text/plain".into(), json!(outcome.text));
    data.insert(
        "application/json".into(),
        outcome.structured.clone().unwrap_or(outcome.result.clone()),
    );
    let mut display = DisplayData::new(data);
    display.metadata.insert(
        "mcp".into(),
        json!({"server": server, "tool": tool, "is_error": outcome.is_error, "elapsed_ms": outcome.elapsed_ms}),
    );
    ctx.out.display(display).await;
    if outcome.is_error {
        return Err(KernelError::Mcp(format!(
            "`{server}.{tool}` reported an error: {}",
            outcome.text.lines().next().unwrap_or("(no message)")
        )));
    }
    Ok(())
}

/// A result's text: JSON pretty-printed in a code block, else as it is.
fn result_markdown(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value) if value.is_object() || value.is_array() => format!(
            "```json\n{}\n```",
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_owned())
        ),
        _ if text.trim().is_empty() => "*(no text)*".into(),
        _ => format!("```\n{text}\n```"),
    }
}

fn servers_markdown(servers: &[ServerStatus]) -> String {
    if servers.is_empty() {
        return "No MCP servers are configured: add them as `[mcp.servers.NAME]` in the daemon's config (docs/mcp.md).".into();
    }
    let mut out = String::from("| server | transport | command or URL | state | tools | note |\n|---|---|---|---|---|---|\n");
    for s in servers {
        let state = serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let state = match s.pid {
            Some(pid) => format!("{state} (pid {pid})"),
            None => state,
        };
        let tools = if s.tools.is_empty() {
            "—".into()
        } else {
            s.tools.join(", ")
        };
        let note = match (&s.error, s.crashes) {
            (Some(e), _) => e.clone(),
            (None, 0) => String::new(),
            (None, n) => format!("restarted after {n} crash(es)"),
        };
        out.push_str(&format!(
            "| {} | {} | `{}` | {} | {} | {} |\n",
            cell(&s.name),
            s.transport,
            cell(&s.target),
            state,
            cell(&tools),
            cell(&note)
        ));
    }
    out.push_str("\nServers start on first use; `%mcp tools` starts them and lists their tools.");
    out
}

fn tools_markdown(listed: &[ServerTools]) -> String {
    if listed.is_empty() {
        return "No MCP servers are configured.".into();
    }
    let mut out = String::from("| tool | arguments | description |\n|---|---|---|\n");
    for server in listed {
        if let Some(error) = &server.error {
            out.push_str(&format!(
                "| `{}.*` | | **{}** |\n",
                cell(&server.server),
                cell(error)
            ));
        }
        for tool in &server.tools {
            out.push_str(&format!(
                "| `{}.{}` | {} | {} |\n",
                cell(&server.server),
                cell(&tool.name),
                cell(&arguments_of(&tool.input_schema)),
                cell(tool.description.lines().next().unwrap_or(""))
            ));
        }
    }
    out.push_str("\nCall one with `%mcp call SERVER.TOOL {\"arg\": …}`; skills offer them with `tools: [{mcp: SERVER}]`.");
    out
}

/// `name*: type, …` from a schema's properties (`*`: required).
fn arguments_of(schema: &Value) -> String {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(properties) = schema["properties"].as_object() else {
        return String::new();
    };
    properties
        .iter()
        .map(|(name, p)| {
            let kind = p["type"].as_str().unwrap_or("any");
            let star = if required.contains(&name.as_str()) {
                "*"
            } else {
                ""
            };
            format!("`{name}{star}`: {kind}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_list_names_types_and_which_are_required() {
        let schema = json!({"type": "object", "properties": {"timezone": {"type": "string"}, "n": {"type": "integer"}}, "required": ["timezone"]});
        assert_eq!(arguments_of(&schema), "`timezone*`: string, `n`: integer");
        assert_eq!(
            result_markdown("{\"a\":1}"),
            "```json\n{\n  \"a\": 1\n}\n```"
        );
    }
}
