//! `skillctl mcp`: a stdio MCP server for agents, bridged to the running
//! daemon over the wire protocol.
//!
//! An agent (Claude Desktop or Code, VS Code, Cursor, …) launches
//! `skillctl mcp` and speaks MCP on its stdin and stdout, one JSON-RPC
//! message per line. Each message goes to the daemon as an
//! `mcp_request` (`send`) in one MCP session named by this process;
//! responses come back in the `mcp_reply`s, and what the daemon's server
//! sends unasked (progress, list-changed notices) comes on IOPub as
//! `mcp_message`s for this session. Messages are handled concurrently,
//! so a `notifications/cancelled` reaches the daemon while the call it
//! cancels is running. At end of input the session is closed.
//!
//! Nothing but MCP goes to stdout; diagnostics go to stderr.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use skillkernel_protocol::content::{
    ExtensionRequest, McpMessage, McpReply, McpRequest, Reply, ReplyTo, MCP_MESSAGE,
};
use skillkernel_protocol::{Header, Message, Signer, WireLimits};
use skillkernel_transport::{FrameReceiver, FrameSender};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::client::KernelClient;

/// The longest line (one JSON-RPC message) passed on; longer ones get a
/// JSON-RPC error here, never reaching the daemon.
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// How long one request may wait for the daemon's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3600);

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Message>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A JSON-RPC error for the message with `id`.
fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

struct Link {
    shell: Arc<dyn FrameSender>,
    signer: Signer,
    client_session: String,
    mcp_session: String,
    waiting: Waiting,
}

impl Link {
    fn message(&self, request: &McpRequest) -> Message {
        Message::new(
            Header::new(McpRequest::TYPE.request(), &self.client_session, "skillctl"),
            request,
        )
    }

    /// Sends `request` and waits for its `mcp_reply`.
    async fn ask(&self, request: &McpRequest) -> Result<ReplyTo<McpRequest>, String> {
        let msg = self.message(request);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(msg.header.msg_id.clone(), tx);
        if let Err(e) = self.shell.send(msg.encode(&self.signer)).await {
            lock(&self.waiting).remove(&msg.header.msg_id);
            return Err(format!("the daemon could not be reached: {e}"));
        }
        let reply = match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err("the connection to the daemon closed".into()),
            Err(_) => {
                lock(&self.waiting).remove(&msg.header.msg_id);
                return Err(format!(
                    "the daemon did not answer within {ANSWER_TIMEOUT:?}"
                ));
            }
        };
        serde_json::from_value(reply.content).map_err(|e| format!("an invalid mcp_reply: {e}"))
    }
}

/// Runs the bridge until `input` ends: the agent's messages from `input`,
/// everything for the agent to `output`.
pub async fn bridge<R, W>(client: KernelClient, input: R, output: W) -> Result<(), String>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (sockets, signer, client_session) = client.into_parts();
    let link = Arc::new(Link {
        shell: Arc::clone(&sockets.shell.sender),
        signer: signer.clone(),
        client_session,
        mcp_session: uuid::Uuid::new_v4().to_string(),
        waiting: Arc::default(),
    });
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(write_lines(out_rx, output));
    let replies = tokio::spawn(route_replies(
        sockets.shell.receiver,
        signer.clone(),
        Arc::clone(&link.waiting),
    ));
    let notices = tokio::spawn(forward_notices(
        sockets.iopub,
        signer,
        link.mcp_session.clone(),
        out_tx.clone(),
    ));
    let mut lines = BufReader::new(input).lines();
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                eprintln!("skillctl mcp: reading stdin failed: {e}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_LINE {
            let _ = out_tx.send(error(
                Value::Null,
                -32600,
                format!("the message is larger than {MAX_LINE} bytes"),
            ));
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                let _ = out_tx.send(error(Value::Null, -32700, format!("parse error: {e}")));
                continue;
            }
        };
        if message.get("method").and_then(Value::as_str) == Some("initialize") {
            // The session's lifecycle is settled by `initialize`: a request
            // that overtook it would open a session without one (and be
            // refused for want of per-request metadata). Later requests run
            // concurrently.
            pass_on(&link, message, &out_tx).await;
            continue;
        }
        let (link, out) = (Arc::clone(&link), out_tx.clone());
        in_flight.spawn(async move { pass_on(&link, message, &out).await });
        // Reap what has finished, so the set does not grow.
        while in_flight.try_join_next().is_some() {}
    }
    // End of input: let what was asked be answered, then close.
    while in_flight.join_next().await.is_some() {}
    let close = McpRequest::Close {
        session: link.mcp_session.clone(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), link.ask(&close)).await;
    replies.abort();
    notices.abort();
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

/// Sends one of the agent's messages and writes what answers it.
async fn pass_on(link: &Link, message: Value, out: &mpsc::UnboundedSender<Value>) {
    let id = message.get("id").cloned();
    let request = McpRequest::Send {
        session: link.mcp_session.clone(),
        message,
    };
    let failed = |why: String| {
        // A notification gets no answer, even an error.
        if let Some(id) = &id {
            let _ = out.send(error(id.clone(), -32603, why));
        } else {
            eprintln!("skillctl mcp: {why}");
        }
    };
    match link.ask(&request).await {
        Ok(Reply::Ok(McpReply::Sent { messages })) => {
            for m in messages {
                let _ = out.send(m);
            }
        }
        Ok(Reply::Ok(other)) => failed(format!("an unexpected mcp_reply: {other:?}")),
        Ok(Reply::Error(e)) => failed(format!("{}: {}", e.ename, e.evalue)),
        Err(why) => failed(why),
    }
}

/// Hands each reply on shell to the request waiting for it.
async fn route_replies(mut shell: Box<dyn FrameReceiver>, signer: Signer, waiting: Waiting) {
    let limits = WireLimits::default();
    while let Ok(frames) = shell.recv().await {
        let Ok(reply) = Message::decode(frames, &signer, &limits) else {
            continue;
        };
        let Some(parent) = reply.parent_header.msg_id() else {
            continue;
        };
        if let Some(tx) = lock(&waiting).remove(&parent) {
            let _ = tx.send(reply);
        }
    }
    // The connection is gone: every waiting request fails.
    lock(&waiting).clear();
}

/// Writes this session's `mcp_message`s from IOPub.
async fn forward_notices(
    mut iopub: Box<dyn FrameReceiver>,
    signer: Signer,
    session: String,
    out: mpsc::UnboundedSender<Value>,
) {
    let limits = WireLimits::default();
    while let Ok(frames) = iopub.recv().await {
        let Ok(msg) = Message::decode(frames, &signer, &limits) else {
            continue;
        };
        if msg.msg_type() != MCP_MESSAGE {
            continue;
        }
        if let Ok(notice) = serde_json::from_value::<McpMessage>(msg.content) {
            if notice.session == session {
                let _ = out.send(notice.message);
            }
        }
    }
}

/// Writes each message as one line, flushed.
async fn write_lines<W: AsyncWrite + Unpin>(mut rx: mpsc::UnboundedReceiver<Value>, mut output: W) {
    while let Some(message) = rx.recv().await {
        let mut line = message.to_string();
        line.push('\n');
        if output.write_all(line.as_bytes()).await.is_err() || output.flush().await.is_err() {
            return;
        }
    }
}
