//! `mcp_request` / `mcp_reply`: MCP sessions over the wire protocol, for
//! `skillctl mcp` (see [`skillkernel_mcp::bridge`]).
//!
//! Each `send` hands one JSON-RPC message to the client's session and
//! replies with its response; what the session's server sends unasked
//! (progress, list-changed notices) is published on IOPub as
//! `mcp_message`, parented by the session's latest request, in the order
//! the server sent it. These requests are answered beside the shell
//! queue ([`crate::shell`]), so that an agent's long tool call and a
//! notebook's cells do not wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;
use skillkernel_mcp::Bridge;
use skillkernel_protocol::content::{
    ErrorContent, ExtensionRequest, McpMessage, McpReply, McpRequest, ReplyTo, MCP_MESSAGE,
};
use skillkernel_protocol::Message;
use skillkernel_stdx::lock;
use tokio::sync::mpsc;

use crate::mcp_host::KernelHost;
use crate::session::Shared;

/// The kernel's bridge, started on the first `mcp_request`.
fn bridge(shared: &Arc<Shared>) -> Arc<Bridge> {
    let sessions = &shared.mcp;
    Arc::clone(sessions.bridge.get_or_init(|| {
        let (tx, rx) = mpsc::unbounded_channel::<(String, Value)>();
        tokio::spawn(publish(
            Arc::downgrade(shared),
            Arc::clone(&sessions.parents),
            rx,
        ));
        let publish = Arc::new(move |session: &str, message: Value| {
            let _ = tx.send((session.to_owned(), message));
        });
        Arc::new(Bridge::new(
            Arc::new(KernelHost::new(shared)),
            sessions.settings,
            publish,
        ))
    }))
}

/// Publishes what sessions' servers send unasked, in order.
async fn publish(
    shared: Weak<Shared>,
    parents: Arc<Mutex<HashMap<String, Message>>>,
    mut rx: mpsc::UnboundedReceiver<(String, Value)>,
) {
    while let Some((session, message)) = rx.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let parent = lock(&parents).get(&session).cloned();
        shared
            .iopub
            .publish(
                parent.as_ref(),
                MCP_MESSAGE,
                McpMessage { session, message },
            )
            .await;
    }
}

/// The `mcp_reply` content for an `mcp_request`.
pub(crate) async fn reply(shared: &Arc<Shared>, req: &Message) -> Value {
    let result = match McpRequest::parse(&req.content) {
        Ok(request) => answer(shared, req, request).await,
        Err(e) => Err(ErrorContent::new(
            "UsageError",
            format!(
                "{}: {e}; send {{\"action\": \"send\", \"session\": ID, \"message\": {{JSON-RPC}}}} or {{\"action\": \"close\", \"session\": ID}}",
                McpRequest::TYPE.request()
            ),
        )),
    };
    let reply: ReplyTo<McpRequest> = result.into();
    crate::errors::reply_json(reply)
}

async fn answer(
    shared: &Arc<Shared>,
    req: &Message,
    request: McpRequest,
) -> Result<McpReply, ErrorContent> {
    let sessions = &shared.mcp;
    match request {
        McpRequest::Send { session, message } => {
            let bridge = bridge(shared);
            {
                let mut parents = lock(&sessions.parents);
                if parents.len() >= 2 * skillkernel_mcp::bridge::MAX_SESSIONS {
                    // Sessions that expired without a `close`.
                    parents.retain(|name, _| bridge.is_open(name));
                }
                parents.insert(session.clone(), req.clone());
            }
            // On the MCP worker, below the cells' priority.
            let messages =
                skillkernel_mcp::worker::spawn(async move { bridge.send(&session, message).await })
                    .await
                    .map_err(|e| ErrorContent::new("McpSessionError", e.to_string()))?
                    .map_err(|e| ErrorContent::new("McpSessionError", e.to_string()))?;
            Ok(McpReply::Sent { messages })
        }
        McpRequest::Servers => Ok(McpReply::Servers {
            servers: shared
                .mcp_clients()
                .status()
                .iter()
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                .collect(),
        }),
        McpRequest::Tools { server } => {
            // Listing starts servers: work a shutdown waits for or refuses.
            if shared.exit_requested() {
                return Err(ErrorContent::new(
                    "KernelShuttingDown",
                    "the kernel is shutting down; it starts no MCP server now",
                ));
            }
            let _operation = shared.operations.begin("mcp", "tools");
            let listed = shared
                .mcp_clients()
                .catalog(server.as_deref())
                .await
                .map_err(|e| ErrorContent::new("McpError", e))?;
            Ok(McpReply::Tools {
                tools: listed
                    .iter()
                    .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                    .collect(),
            })
        }
        McpRequest::Close { session } => {
            lock(&sessions.parents).remove(&session);
            Ok(McpReply::Closed {
                closed: bridge(shared).close(&session),
            })
        }
    }
}
