//! The client side of MCP's Streamable HTTP transport, on the workspace's
//! `reqwest` (rmcp's own client needs another major version of it).
//!
//! Each message is one POST. A request's response comes back as the
//! POST's JSON body or as `data:` events of its `text/event-stream` body
//! (with any notifications sent before it, progress included); the
//! session id the server gives at `initialize` goes with every later
//! POST, and `close` ends the session with a DELETE. A POST that fails
//! answers its request with a JSON-RPC error naming the server and the
//! HTTP status, so a call never waits for an answer that cannot come.
//! Server-initiated messages outside a request (the optional GET stream)
//! are not listened to: what skills need arrives on the POSTs.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::RoleClient;
use rmcp::transport::Transport;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The most one response may hold.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// Why a message could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpTransportError(String);

#[derive(Default)]
struct Session {
    id: Option<String>,
    protocol_version: Option<String>,
}

/// A connection to one Streamable HTTP server.
pub struct HttpTransport {
    client: reqwest::Client,
    url: Arc<str>,
    token: Option<Arc<str>>,
    session: Arc<Mutex<Session>>,
    incoming_tx: mpsc::UnboundedSender<ServerJsonRpcMessage>,
    incoming: mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
}

impl HttpTransport {
    pub fn new(url: &str, token: Option<String>) -> Result<HttpTransport, HttpTransportError> {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| HttpTransportError(format!("cannot make an HTTP client: {e}")))?;
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        Ok(HttpTransport {
            client,
            url: url.into(),
            token: token.map(Into::into),
            session: Arc::default(),
            incoming_tx,
            incoming,
        })
    }
}

impl Transport<RoleClient> for HttpTransport {
    type Error = HttpTransportError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let post = Post {
            client: self.client.clone(),
            url: Arc::clone(&self.url),
            token: self.token.clone(),
            session: Arc::clone(&self.session),
            incoming: self.incoming_tx.clone(),
        };
        async move {
            let message = serde_json::to_value(&item)
                .map_err(|e| HttpTransportError(format!("cannot encode a message: {e}")))?;
            let id = message.get("id").cloned();
            if let Err(e) = post.deliver(&message).await {
                match id {
                    // The request is answered with the failure.
                    Some(id) if message.get("method").is_some() => {
                        post.push(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": e.0}}));
                    }
                    _ => return Err(e),
                }
            }
            Ok(())
        }
    }

    fn receive(
        &mut self,
    ) -> impl std::future::Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.incoming.recv()
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        let session = skillkernel_stdx::lock(&self.session).id.take();
        let request = session.map(|id| {
            let mut request = self
                .client
                .delete(&*self.url)
                .header(SESSION_HEADER, id)
                .timeout(std::time::Duration::from_secs(5));
            if let Some(token) = &self.token {
                request = request.bearer_auth(&**token);
            }
            request
        });
        self.incoming.close();
        async move {
            if let Some(request) = request {
                // A server that forgot the session already is fine.
                let _ = request.send().await;
            }
            Ok(())
        }
    }
}

/// What one POST needs.
struct Post {
    client: reqwest::Client,
    url: Arc<str>,
    token: Option<Arc<str>>,
    session: Arc<Mutex<Session>>,
    incoming: mpsc::UnboundedSender<ServerJsonRpcMessage>,
}

impl Post {
    async fn deliver(&self, message: &Value) -> Result<(), HttpTransportError> {
        let mut request = self
            .client
            .post(&*self.url)
            .header("accept", "application/json, text/event-stream")
            .json(message);
        {
            let session = skillkernel_stdx::lock(&self.session);
            if let Some(id) = &session.id {
                request = request.header(SESSION_HEADER, id);
            }
            if let Some(version) = &session.protocol_version {
                request = request.header(VERSION_HEADER, version);
            }
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(&**token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| HttpTransportError(format!("cannot reach {}: {e}", self.url)))?;
        let status = response.status();
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 | 403 => "; check the token (`token_env`)",
                404 if skillkernel_stdx::lock(&self.session).id.is_some() => {
                    "; the server ended the session"
                }
                _ => "",
            };
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            return Err(HttpTransportError(format!(
                "{} answered HTTP {status}{hint}{}",
                self.url,
                if body.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", body.trim())
                }
            )));
        }
        if let Some(id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            skillkernel_stdx::lock(&self.session).id = Some(id.to_owned());
        }
        let event_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if status.as_u16() == 202 {
            return Ok(());
        }
        if event_stream {
            let mut body = response.bytes_stream();
            let mut events = EventStream::default();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    HttpTransportError(format!("{} broke off its answer: {e}", self.url))
                })?;
                for data in events.push(&chunk)? {
                    // A priming event (an id, empty data) carries nothing.
                    if !data.trim().is_empty() {
                        self.accept(&data)?;
                    }
                }
            }
            return Ok(());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| HttpTransportError(format!("{} broke off its answer: {e}", self.url)))?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(HttpTransportError(format!(
                "{} answered more than {} MiB",
                self.url,
                MAX_RESPONSE_BYTES >> 20
            )));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.accept(&String::from_utf8_lossy(&body))
    }

    /// Takes one message (or a batch) the server sent.
    fn accept(&self, text: &str) -> Result<(), HttpTransportError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            HttpTransportError(format!("{} sent something that is not JSON: {e}", self.url))
        })?;
        let messages = match value {
            Value::Array(batch) => batch,
            one => vec![one],
        };
        for message in messages {
            if let Some(version) = message
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
            {
                skillkernel_stdx::lock(&self.session).protocol_version = Some(version.to_owned());
            }
            self.push(message);
        }
        Ok(())
    }

    fn push(&self, message: Value) {
        match serde_json::from_value::<ServerJsonRpcMessage>(message) {
            Ok(message) => {
                let _ = self.incoming.send(message);
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "an MCP server sent a message that is not MCP; it is dropped")
            }
        }
    }
}

/// Server-sent events, cut into their `data`.
#[derive(Default)]
struct EventStream {
    buffer: Vec<u8>,
    data: Vec<String>,
    total: usize,
}

impl EventStream {
    /// The data of each event completed by `chunk`.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, HttpTransportError> {
        self.total += chunk.len();
        if self.total > MAX_RESPONSE_BYTES {
            return Err(HttpTransportError(format!(
                "an event stream passed {} MiB",
                MAX_RESPONSE_BYTES >> 20
            )));
        }
        self.buffer.extend_from_slice(chunk);
        let mut done = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    done.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data
                    .push(data.strip_prefix(' ').unwrap_or(data).to_owned());
            }
            // `event:`, `id:`, `retry:` and comments carry nothing needed.
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let mut events = EventStream::default();
        let text = b"event: message\r\ndata: {\"a\":\ndata: 1}\r\n\r\n: comment\n\ndata: [2]\n\n";
        let mut out = Vec::new();
        for piece in text.chunks(3) {
            out.extend(events.push(piece).unwrap());
        }
        assert_eq!(out, vec!["{\"a\":\n1}".to_string(), "[2]".to_string()]);
    }
}
