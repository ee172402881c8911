//! Tools beyond the skills, off unless `[mcp.server]` turns them on:
//!
//! * `skillkernel_run_command` — `/bin/sh -c COMMAND` in the sandbox under
//!   the policy of a notebook's `!command` (the `[sandbox]` section), with
//!   the kernel's `command_timeout`; the result is its output and how it
//!   ended. The audit log names `mcp` as who ran it.
//! * `skillkernel_list_models` — the models of every backend.
//!
//! Their names carry the `skillkernel_` prefix so that no skill's name
//! can clash with them.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde_json::{json, Value};
use skillkernel_sandbox::audit::Subject;
use skillkernel_sandbox::run::{OutputSink, Stream};
use skillkernel_sandbox::verdict::Verdict;
use skillkernel_skills::verdict_error::{verdict_error, Grantor};

use super::call::error_result;
use super::ServerSettings;
use crate::host::{Host, HostRefusal};

pub const RUN_COMMAND: &str = "skillkernel_run_command";
pub const LIST_MODELS: &str = "skillkernel_list_models";

/// The most of a command's output returned.
const OUTPUT_BYTES: usize = 64 * 1024;

/// An extra tool, when it is turned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    RunCommand,
    ListModels,
}

impl Extra {
    pub fn named(name: &str, settings: ServerSettings) -> Option<Extra> {
        match name {
            RUN_COMMAND if settings.run_command => Some(Extra::RunCommand),
            LIST_MODELS if settings.list_models => Some(Extra::ListModels),
            _ => None,
        }
    }
}

fn schema(value: Value) -> Arc<JsonObject> {
    Arc::new(value.as_object().cloned().unwrap_or_default())
}

/// The extra tools `settings` turn on.
pub fn tools(settings: ServerSettings) -> Vec<Tool> {
    let mut tools = Vec::new();
    if settings.run_command {
        tools.push(Tool::new(
            RUN_COMMAND,
            "Runs a shell command (/bin/sh -c) in skillkernel's sandbox, in the kernel's \
             working directory, as a notebook's !command cell runs; returns its output.",
            schema(json!({
                "type": "object",
                "properties": {"command": {"type": "string", "description": "The shell command."}},
                "required": ["command"],
                "additionalProperties": false
            })),
        ));
    }
    if settings.list_models {
        tools.push(Tool::new(
            LIST_MODELS,
            "Lists the models skillkernel's backends offer.",
            schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        ));
    }
    tools
}

pub async fn call(
    host: &dyn Host,
    extra: Extra,
    arguments: JsonObject,
    context: &RequestContext<RoleServer>,
) -> CallToolResult {
    match extra {
        Extra::RunCommand => match arguments.get("command").and_then(Value::as_str) {
            Some(command) => run_command(host, command, context).await,
            None => {
                CallToolResult::error(vec![ContentBlock::text("`command` (a string) is required")])
            }
        },
        Extra::ListModels => list_models(host).await,
    }
}

/// Collects a program's output, up to [`OUTPUT_BYTES`].
#[derive(Default)]
struct Collect {
    text: String,
    cut: bool,
}

impl OutputSink for Collect {
    async fn output(&mut self, _stream: Stream, text: &str) {
        if self.text.len() + text.len() > OUTPUT_BYTES {
            self.cut = true;
            let room = OUTPUT_BYTES.saturating_sub(self.text.len());
            let mut end = room.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&text[..end]);
        } else {
            self.text.push_str(text);
        }
    }

    async fn flush(&mut self) {}
}

async fn run_command(
    host: &dyn Host,
    command: &str,
    context: &RequestContext<RoleServer>,
) -> CallToolResult {
    let Some(sandbox) = host.sandbox() else {
        return CallToolResult::error(vec![ContentBlock::text(HostRefusal::NoSandbox.to_string())]);
    };
    let policy = match sandbox.cell_policy() {
        Ok(policy) => policy,
        Err(e) => return CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
    };
    let argv = ["/bin/sh", "-c", command].map(String::from);
    let timeout = host.command_timeout();
    let subject = Subject {
        source: "mcp",
        skill: None,
        version: None,
        own_dir: None,
    };
    let mut sink = Collect::default();
    let verdict = match sandbox
        .run(
            &subject,
            &policy,
            &argv,
            None,
            &mut sink,
            timeout,
            &context.ct,
        )
        .await
    {
        Ok(verdict) => verdict,
        Err(e) => {
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "the command did not start: {e}"
            ))])
        }
    };
    let mut text = sink.text;
    if sink.cut {
        text.push_str(&format!("\n[output cut at {} KiB]", OUTPUT_BYTES / 1024));
    }
    match verdict {
        Verdict::Success => CallToolResult::success(vec![ContentBlock::text(text)]),
        Verdict::Failed { status } => CallToolResult::error(vec![ContentBlock::text(format!(
            "{text}\n[the command failed: {status}]"
        ))]),
        Verdict::TimedOut { after } => CallToolResult::error(vec![ContentBlock::text(format!(
            "{text}\n[the command was stopped after {} s]",
            after.as_secs()
        ))]),
        Verdict::Interrupted => {
            CallToolResult::error(vec![ContentBlock::text(format!("{text}\n[interrupted]"))])
        }
        ref other => match verdict_error(other, "the command", Grantor::Cell) {
            Some(e) => {
                let mut result = error_result(&e);
                result.content.insert(0, ContentBlock::text(text));
                result
            }
            None => CallToolResult::success(vec![ContentBlock::text(text)]),
        },
    }
}

async fn list_models(host: &dyn Host) -> CallToolResult {
    let ctx = match host.run_context("mcp", true) {
        Ok(ctx) => ctx,
        Err(e) => return CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
    };
    let listing = ctx.registry.list().await;
    let unavailable: Vec<Value> = listing
        .unavailable
        .iter()
        .map(|(backend, e)| json!({"backend": backend, "error": e.to_string()}))
        .collect();
    let models = serde_json::to_value(&listing.models).unwrap_or_default();
    let structured = json!({"models": models, "unavailable": unavailable});
    let text = serde_json::to_string_pretty(&structured).unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    result
}
