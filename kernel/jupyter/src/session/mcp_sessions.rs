//! The state behind `mcp_request` ([`crate::mcp_request`] runs it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use skillkernel_mcp::{Bridge, ServerSettings};
use skillkernel_protocol::Message;

/// The kernel's bridged MCP sessions.
#[derive(Default)]
pub struct McpSessions {
    /// Started on the first request.
    pub(crate) bridge: OnceLock<Arc<Bridge>>,
    /// Each session's latest request: the parent of what it publishes.
    pub(crate) parents: Arc<Mutex<HashMap<String, Message>>>,
    pub(crate) settings: ServerSettings,
}

impl McpSessions {
    pub fn new(settings: ServerSettings) -> McpSessions {
        McpSessions {
            settings,
            ..McpSessions::default()
        }
    }
}
