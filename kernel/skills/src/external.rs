//! Tools that live outside the skill engine — today, the tools of the MCP
//! servers the daemon is configured with (`[mcp.servers.NAME]`). The host
//! hands an [`ExternalTools`] in through
//! [`RunContext::external`](crate::exec::RunContext); a skill names the
//! servers in its `tools` (`{mcp: NAME}`, or `mcp__NAME` in an Agent
//! Skill's `allowed-tools`) and the tool loop offers their tools.
//!
//! Skills name servers in their manifests; the protocol itself is the
//! host's business — this crate sees only names, schemas and text.

use futures::future::BoxFuture;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// One tool of a server, as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalTool {
    /// The server's name for it.
    pub name: String,
    pub description: String,
    /// A JSON Schema of its arguments object.
    pub input_schema: Value,
}

/// What a call returned, as text for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalResult {
    /// `false`: the tool reported an error (`isError`).
    pub ok: bool,
    pub text: String,
}

/// The servers a skill's tools may come from.
pub trait ExternalTools: Send + Sync {
    /// The tools `server` offers (started if it is not running). The error
    /// names the server and says what went wrong.
    fn tools<'a>(&'a self, server: &'a str) -> BoxFuture<'a, Result<Vec<ExternalTool>, String>>;

    /// Calls `tool` of `server`; `cancel` stops the call (the server is
    /// told). The error is for a call that could not be made or answered.
    fn call<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        arguments: Value,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExternalResult, String>>;
}

/// A tool's name for the model: `SERVER__TOOL`, as Agent Skills write it
/// after `mcp__` (letters, digits, `_`, `-`; at most 64).
pub fn model_name(server: &str, tool: &str) -> String {
    crate::tools::tool_name(&format!("{server}__{tool}"))
}

/// What `[mcp.servers.NAME]` accepts as a name.
pub fn is_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
