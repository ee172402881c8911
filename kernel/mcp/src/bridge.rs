//! MCP sessions carried by another protocol, one message at a time: what
//! the kernel's `mcp_request` uses, so that `skillctl mcp` (an agent's
//! stdio MCP server) reaches the daemon over the Jupyter wire protocol.
//!
//! Each session, named by its client, is a [`SkillServer`] served by
//! `rmcp` over a pair of in-memory channels. [`Bridge::send`] hands it one
//! JSON-RPC message and, for a request, waits for its response; what the
//! server sends on its own (progress, list-changed notifications) goes to
//! the `publish` callback the bridge was made with. A request cancelled
//! by the client's `notifications/cancelled` is answered with no message
//! (MCP servers do not answer cancelled requests).
//!
//! Sessions end when their client says `close`, when unused for
//! [`IDLE_TIMEOUT`] (a client killed without closing), or when the
//! bridge is dropped; at most [`MAX_SESSIONS`] live at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::ServiceExt;
use serde_json::Value;
use skillkernel_stdx::lock;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::host::Host;
use crate::server::{ServerSettings, SkillServer};

/// A session unused this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Sessions open at once.
pub const MAX_SESSIONS: usize = 256;
/// The longest session name accepted.
const MAX_NAME: usize = 128;

/// Gets what a session's server sends unasked: `(session, message)`.
pub type Publish = Arc<dyn Fn(&str, Value) + Send + Sync>;

/// Why a message could not be handed to a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BridgeError {
    #[error("the session name must be 1 to {MAX_NAME} characters")]
    BadSessionName,
    #[error("too many MCP sessions are open ({MAX_SESSIONS}); close one first")]
    TooManySessions,
    #[error("MCP session {0} has ended")]
    SessionEnded(String),
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

struct Session {
    inbound: mpsc::Sender<ClientJsonRpcMessage>,
    pending: Pending,
    last_used: Instant,
    stop: CancellationToken,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The bridged sessions. See the module docs.
pub struct Bridge {
    host: Arc<dyn Host>,
    settings: ServerSettings,
    publish: Publish,
    sessions: Mutex<HashMap<String, Session>>,
}

/// The key a request id is pending under.
fn id_key(id: &Value) -> String {
    id.to_string()
}

impl Bridge {
    pub fn new(host: Arc<dyn Host>, settings: ServerSettings, publish: Publish) -> Bridge {
        Bridge {
            host,
            settings,
            publish,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Whether session `name` is open.
    pub fn is_open(&self, name: &str) -> bool {
        lock(&self.sessions).contains_key(name)
    }

    /// Ends session `name`; whether it was open.
    pub fn close(&self, name: &str) -> bool {
        lock(&self.sessions).remove(name).is_some()
    }

    /// Hands `message` to session `name` (opened on first use) and returns
    /// what answers it: the response of a request, nothing for a
    /// notification or a cancelled request, a JSON-RPC error for a message
    /// that is not valid JSON-RPC.
    pub async fn send(&self, name: &str, message: Value) -> Result<Vec<Value>, BridgeError> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(BridgeError::BadSessionName);
        }
        let id = message.get("id").cloned();
        let parsed = match crate::jsonrpc::client_message(&message) {
            Ok(m) => m,
            Err(error) => return Ok(vec![error]),
        };
        let is_request = matches!(parsed, ClientJsonRpcMessage::Request(_));
        let (mut inbound, pending) = self.session(name)?;
        if let Some(cancelled) = cancelled_request(&message) {
            // The server will not answer it: its caller gets nothing.
            if let Some(waiting) = lock(&pending).remove(&id_key(&cancelled)) {
                drop(waiting);
            }
        }
        let answer = match (is_request, &id) {
            (true, Some(id)) => {
                let (tx, rx) = oneshot::channel();
                lock(&pending).insert(id_key(id), tx);
                Some(rx)
            }
            _ => None,
        };
        if inbound.send(parsed).await.is_err() {
            self.close(name);
            return Err(BridgeError::SessionEnded(name.to_owned()));
        }
        match answer {
            Some(rx) => Ok(rx.await.map(|v| vec![v]).unwrap_or_default()),
            None => Ok(Vec::new()),
        }
    }

    /// Session `name`'s inbound channel and pending requests, opening it.
    fn session(
        &self,
        name: &str,
    ) -> Result<(mpsc::Sender<ClientJsonRpcMessage>, Pending), BridgeError> {
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, s| {
            now.duration_since(s.last_used) < IDLE_TIMEOUT && !s.stop.is_cancelled()
        });
        if let Some(s) = sessions.get_mut(name) {
            s.last_used = now;
            return Ok((s.inbound.clone(), Arc::clone(&s.pending)));
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(BridgeError::TooManySessions);
        }
        let (inbound_tx, inbound_rx) = mpsc::channel::<ClientJsonRpcMessage>(64);
        let (outbound_tx, outbound_rx) = mpsc::channel::<ServerJsonRpcMessage>(64);
        let pending: Pending = Arc::default();
        let stop = CancellationToken::new();
        let server = SkillServer::new(Arc::clone(&self.host), self.settings);
        tokio::spawn(serve(
            server,
            outbound_tx,
            inbound_rx,
            stop.clone(),
            name.to_owned(),
        ));
        tokio::spawn(route(
            outbound_rx,
            Arc::clone(&pending),
            Arc::clone(&self.publish),
            name.to_owned(),
        ));
        sessions.insert(
            name.to_owned(),
            Session {
                inbound: inbound_tx.clone(),
                pending: Arc::clone(&pending),
                last_used: now,
                stop,
            },
        );
        Ok((inbound_tx, pending))
    }
}

/// The id of the request a `notifications/cancelled` names.
fn cancelled_request(message: &Value) -> Option<Value> {
    (message.get("method")?.as_str()? == "notifications/cancelled")
        .then(|| message.get("params")?.get("requestId").cloned())
        .flatten()
}

/// Runs one session's server until its client goes or `stop`.
async fn serve(
    server: SkillServer,
    outbound: mpsc::Sender<ServerJsonRpcMessage>,
    inbound: mpsc::Receiver<ClientJsonRpcMessage>,
    stop: CancellationToken,
    name: String,
) {
    let running = tokio::select! {
        _ = stop.cancelled() => return,
        r = server.serve((outbound, inbound)) => r,
    };
    match running {
        Ok(running) => {
            let cancel = running.cancellation_token();
            tokio::select! {
                _ = stop.cancelled() => cancel.cancel(),
                _ = running.waiting() => {}
            }
        }
        Err(e) => tracing::info!(session = %name, error = %e, "MCP session ended before it began"),
    }
    stop.cancel();
}

/// Sends each message of a session's server where it belongs: a response
/// to the request waiting for it, anything else to `publish`.
async fn route(
    mut outbound: mpsc::Receiver<ServerJsonRpcMessage>,
    pending: Pending,
    publish: Publish,
    name: String,
) {
    while let Some(message) = outbound.next().await {
        let value = match serde_json::to_value(&message) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(session = %name, error = %e, "an MCP message could not be encoded");
                continue;
            }
        };
        let is_answer = matches!(
            message,
            ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
        );
        let waiting = match (is_answer, value.get("id")) {
            (true, Some(id)) => lock(&pending).remove(&id_key(id)),
            _ => None,
        };
        match waiting {
            Some(tx) => {
                let _ = tx.send(value);
            }
            None => publish(&name, value),
        }
    }
    // The server ended: nobody will answer what is still pending.
    lock(&pending).clear();
}
