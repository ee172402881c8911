//! What the client half reports: each server's state (for `%mcp` and
//! `skillctl mcp servers`) and a call's outcome (for `%mcp call`).

use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use serde_json::Value;

use super::config::ServerConfig;

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Not started yet (servers start on first use), or stopped.
    #[default]
    Stopped,
    Starting,
    Running,
    /// It ended on its own; the next use starts it again.
    Crashed,
    /// It could not start; the next use after a pause tries again.
    Failed,
}

/// One server, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStatus {
    pub name: String,
    /// `stdio` or `http`.
    pub transport: &'static str,
    /// The command line or the URL.
    pub target: String,
    pub state: ServerState,
    /// A running stdio server's process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its tools, as last listed (empty until it has started once).
    pub tools: Vec<String>,
    /// Why it crashed or could not start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Times it was started, and times it ended on its own.
    pub starts: u64,
    pub crashes: u64,
}

/// What the client knows of one server.
#[derive(Debug, Default)]
pub(super) struct Record {
    pub state: ServerState,
    pub pid: Option<u32>,
    pub tools: Vec<String>,
    pub error: Option<String>,
    pub failed_at: Option<Instant>,
    pub starts: u64,
    pub crashes: u64,
}

impl Record {
    pub fn started(&mut self, pid: Option<u32>, tools: &[rmcp::model::Tool]) {
        self.state = ServerState::Running;
        self.pid = pid;
        self.tools = tools.iter().map(|t| t.name.to_string()).collect();
        self.error = None;
        self.failed_at = None;
        self.starts += 1;
    }

    pub fn crashed(&mut self, why: String) {
        self.state = ServerState::Crashed;
        self.pid = None;
        self.error = Some(why);
        self.crashes += 1;
    }

    pub fn failed(&mut self, why: String) {
        self.state = ServerState::Failed;
        self.pid = None;
        self.error = Some(why);
        self.failed_at = Some(Instant::now());
    }

    /// When and why the last start failed, if that was under `pause` ago.
    pub fn failed_recently(&self, pause: Duration) -> Option<(Instant, String)> {
        let at = self.failed_at.filter(|at| at.elapsed() < pause)?;
        Some((at, self.error.clone().unwrap_or_default()))
    }

    pub fn status(&self, name: &str, config: &ServerConfig) -> ServerStatus {
        ServerStatus {
            name: name.to_owned(),
            transport: config.transport().as_str(),
            target: config.target(),
            state: self.state,
            pid: self.pid,
            tools: self.tools.clone(),
            error: self.error.clone(),
            starts: self.starts,
            crashes: self.crashes,
        }
    }
}

/// What one call returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallOutcome {
    /// The tool reported an error (`isError`).
    pub is_error: bool,
    /// Its text blocks joined (else its structured content as JSON).
    pub text: String,
    /// Its structured content, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structured: Option<Value>,
    /// The whole result as the server sent it.
    pub result: Value,
    pub elapsed_ms: u64,
}

impl CallOutcome {
    pub fn of(result: CallToolResult, elapsed: Duration) -> CallOutcome {
        CallOutcome {
            is_error: result.is_error.unwrap_or(false),
            text: result_text(&result),
            structured: result.structured_content.clone(),
            result: serde_json::to_value(&result).unwrap_or(Value::Null),
            elapsed_ms: elapsed.as_millis().min(u128::from(u64::MAX)) as u64,
        }
    }
}

/// A result as text: text blocks as they are, other blocks described.
pub fn result_text(result: &CallToolResult) -> String {
    let mut parts: Vec<String> = Vec::new();
    for block in &result.content {
        match block {
            ContentBlock::Text(text) => parts.push(text.text.clone()),
            ContentBlock::Image(image) => parts.push(format!("[image, {}]", image.mime_type)),
            ContentBlock::Audio(audio) => parts.push(format!("[audio, {}]", audio.mime_type)),
            ContentBlock::Resource(resource) => parts.push(
                serde_json::to_value(&resource.resource)
                    .ok()
                    .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| "[embedded resource]".into()),
            ),
            ContentBlock::ResourceLink(link) => parts.push(format!("[resource {}]", link.uri)),
            #[allow(unreachable_patterns)]
            _ => parts.push("[content]".into()),
        }
    }
    if parts.is_empty() {
        if let Some(structured) = &result.structured_content {
            return structured.to_string();
        }
    }
    parts.join("\n")
}

/// One server's tools, as `%mcp tools` and `skillctl mcp tools` list them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerTools {
    pub server: String,
    pub tools: Vec<ToolInfo>,
    /// Why they could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One tool of a server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

impl ToolInfo {
    pub fn of(tool: &rmcp::model::Tool) -> ToolInfo {
        ToolInfo {
            name: tool.name.to_string(),
            description: tool.description.as_deref().unwrap_or_default().to_owned(),
            input_schema: Value::Object((*tool.input_schema).clone()),
        }
    }
}
