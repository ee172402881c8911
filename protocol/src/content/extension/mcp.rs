//! `mcp_request` / `mcp_reply`: MCP sessions carried over the wire
//! protocol (what `skillctl mcp` speaks for an agent that runs it as a
//! stdio MCP server), and the IOPub `mcp_message` that carries what a
//! session's server sends unasked.
//!
//! Unlike the other requests, `mcp_request`s are answered beside the
//! shell queue, each as soon as it is done: a long tool call neither
//! waits for a notebook's cells nor holds them up (see `docs/protocol.md`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ExtensionRequest;
use crate::content::ErrorContent;
use crate::RequestType;

/// The IOPub message type that carries a session's notifications.
pub const MCP_MESSAGE: &str = "mcp_message";

/// `mcp_request` content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum McpRequest {
    /// Hands one JSON-RPC message to MCP session `session`, which its
    /// first message opens (the client names it; a UUID does).
    Send { session: String, message: Value },
    /// Ends MCP session `session`.
    Close { session: String },
    /// The MCP servers the kernel is a client of (`[mcp.servers]`) and
    /// their state, without starting any.
    Servers,
    /// The tools of `server`, or of every server (starting them).
    Tools {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
    },
}

impl ExtensionRequest for McpRequest {
    const TYPE: RequestType = RequestType::Mcp;
    type Answer = McpReply;
    type Error = ErrorContent;
}

/// What an `mcp_reply` with `status: ok` carries. Told apart by shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum McpReply {
    /// `send`: the response of a request (or a JSON-RPC error for a
    /// message that is not valid JSON-RPC); nothing for a notification or
    /// a request the client cancelled.
    Sent { messages: Vec<Value> },
    /// `close`: whether the session was open.
    Closed { closed: bool },
    /// `servers`: each server's name, transport, target, state, pid,
    /// tools, error, starts and crashes.
    Servers { servers: Vec<Value> },
    /// `tools`: per server, its `tools` (name, description,
    /// input_schema) or the `error` that kept it from listing them.
    Tools { tools: Vec<Value> },
}

/// IOPub `mcp_message` content: a message session `session`'s server
/// sent on its own (`notifications/progress`, `…/list_changed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpMessage {
    pub session: String,
    pub message: Value,
}
