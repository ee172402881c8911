//! The client side of MCP's Streamable HTTP transport, on the workspace's
//! `reqwest` (rmcp's own client needs another major version of it).
//!
//! Each message is one POST, sent before [`Transport::send`] returns (so
//! `notifications/initialized` reaches the server before the requests
//! after it). A request's response comes back as the POST's JSON body or
//! as `data:` events of its `text/event-stream` body, read aside until
//! the response has come (notifications before it, progress included,
//! are passed on). A stream that ends without the response answers the
//! request with a JSON-RPC error, as does a POST that fails — naming the
//! URL and the HTTP status — so a call never waits for an answer that
//! cannot come. The session id the server gives at `initialize` goes
//! with every later POST, and `close` ends the session with a DELETE.
//! When the server is gone or has forgotten the session (404, or a 400
//! that says so), the
//! transport ends, and the client starts a new session at the next use.
//! Server-initiated messages outside a request (the optional GET stream)
//! are not listened to: what skills need arrives on the POSTs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::RoleClient;
use rmcp::transport::Transport;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most one response may hold.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// The most of an error body kept for the message.
const MAX_ERROR_BYTES: usize = 4 << 10;
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

/// What every POST of one connection shares.
#[derive(Clone)]
struct Link {
    client: reqwest::Client,
    url: Arc<str>,
    token: Option<Arc<str>>,
    session: Arc<Mutex<Session>>,
    incoming: mpsc::UnboundedSender<ServerJsonRpcMessage>,
    /// Tripped when the server is gone or forgot the session.
    ended: CancellationToken,
    /// How long one request's answer may take to arrive.
    request_timeout: Duration,
}

/// A connection to one Streamable HTTP server.
pub struct HttpTransport {
    link: Link,
    incoming: mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
}

impl HttpTransport {
    pub fn new(
        url: &str,
        token: Option<String>,
        request_timeout: Duration,
    ) -> Result<HttpTransport, HttpTransportError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HttpTransportError(format!("cannot make an HTTP client: {e}")))?;
        let (tx, incoming) = mpsc::unbounded_channel();
        Ok(HttpTransport {
            link: Link {
                client,
                url: url.into(),
                token: token.map(Into::into),
                session: Arc::default(),
                incoming: tx,
                ended: CancellationToken::new(),
                request_timeout,
            },
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
        let link = self.link.clone();
        async move {
            let message = serde_json::to_value(&item)
                .map_err(|e| HttpTransportError(format!("cannot encode a message: {e}")))?;
            // A request's id: what its answer (or its failure) carries.
            let id = message
                .get("method")
                .and_then(|_| message.get("id"))
                .cloned();
            match link.clone().post(&message, id.clone()).await {
                Ok(()) => Ok(()),
                Err(e) => match id {
                    Some(id) => {
                        link.fail(id, &e.0);
                        Ok(())
                    }
                    None => Err(e),
                },
            }
        }
    }

    fn receive(
        &mut self,
    ) -> impl std::future::Future<Output = Option<ServerJsonRpcMessage>> + Send {
        let ended = self.link.ended.clone();
        let incoming = &mut self.incoming;
        async move {
            tokio::select! {
                biased;
                message = incoming.recv() => message,
                // What came before the end is still handed on.
                _ = ended.cancelled() => incoming.try_recv().ok(),
            }
        }
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        let link = self.link.clone();
        let session = skillkernel_stdx::lock(&link.session).id.take();
        self.incoming.close();
        link.ended.cancel();
        async move {
            if let Some(id) = session {
                let mut request = link
                    .client
                    .delete(&*link.url)
                    .header(SESSION_HEADER, id)
                    .timeout(Duration::from_secs(5));
                if let Some(token) = &link.token {
                    request = request.bearer_auth(&**token);
                }
                // A server that forgot the session already is fine.
                let _ = request.send().await;
            }
            Ok(())
        }
    }
}

impl Link {
    /// Answers request `id` with `message` as a JSON-RPC error.
    fn fail(&self, id: Value, message: &str) {
        self.push(
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": message}}),
        );
    }

    /// POSTs `message`; a request's answer is passed on (read aside when
    /// it comes as an event stream).
    async fn post(self, message: &Value, id: Option<Value>) -> Result<(), HttpTransportError> {
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
        let in_session = skillkernel_stdx::lock(&self.session).id.is_some();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                // The server is gone: the next use starts a new session.
                if in_session && (e.is_connect() || e.is_request()) {
                    self.ended.cancel();
                }
                return Err(HttpTransportError(format!(
                    "cannot reach {}: {e}",
                    self.url
                )));
            }
        };
        let status = response.status();
        if !status.is_success() {
            let body = read_capped(response, MAX_ERROR_BYTES)
                .await
                .unwrap_or_default();
            let body: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            // The spec says 404; some servers say 400 and name the session.
            let session_lost = in_session
                && (status.as_u16() == 404
                    || (status.as_u16() == 400 && body.to_lowercase().contains("session")));
            let hint = match status.as_u16() {
                401 | 403 => "; check the token (`token_env`)",
                _ if session_lost => "; the server ended the session",
                _ => "",
            };
            if session_lost {
                self.ended.cancel();
            }
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
        if let Some(session) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            skillkernel_stdx::lock(&self.session).id = Some(session.to_owned());
        }
        if status.as_u16() == 202 {
            return Ok(());
        }
        let event_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if event_stream {
            // Read aside: a server may keep the stream open after the
            // answer, and the caller must not wait for its end.
            tokio::spawn(self.read_events_aside(response, id));
            return Ok(());
        }
        let body = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| HttpTransportError(format!("{}: {e}", self.url)))?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.accept(&String::from_utf8_lossy(&body))?;
        Ok(())
    }

    /// [`Link::read_events`] within the request timeout; a request whose
    /// response did not come is answered with the reason.
    async fn read_events_aside(self, response: reqwest::Response, id: Option<Value>) {
        let read = tokio::select! {
            read = tokio::time::timeout(self.request_timeout, self.read_events(response, id.as_ref())) => {
                read.unwrap_or_else(|_| Err(HttpTransportError(format!(
                    "{} did not answer within {} s",
                    self.url,
                    self.request_timeout.as_secs()
                ))))
            }
            _ = self.ended.cancelled() => Ok(true),
        };
        if let Some(id) = id {
            match read {
                Ok(true) => {}
                Ok(false) => self.fail(
                    id,
                    &format!("{} ended its answer without a response", self.url),
                ),
                Err(e) => self.fail(id, &e.0),
            }
        }
    }

    /// Passes on the messages of an event stream until the response to
    /// `id` (if any) has come: `true` once it has (or there is none).
    async fn read_events(
        &self,
        response: reqwest::Response,
        id: Option<&Value>,
    ) -> Result<bool, HttpTransportError> {
        let mut body = response.bytes_stream();
        let mut events = EventStream::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                HttpTransportError(format!("{} broke off its answer: {e}", self.url))
            })?;
            for data in events.push(&chunk)? {
                // A priming event (an id, empty data) carries nothing.
                if data.trim().is_empty() {
                    continue;
                }
                let answered = self.accept(&data)?;
                if id.is_some_and(|id| answered.contains(id)) {
                    return Ok(true);
                }
            }
        }
        Ok(id.is_none())
    }

    /// Takes one message (or a batch) the server sent; the ids of the
    /// responses among them.
    fn accept(&self, text: &str) -> Result<Vec<Value>, HttpTransportError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            HttpTransportError(format!("{} sent something that is not JSON: {e}", self.url))
        })?;
        let messages = match value {
            Value::Array(batch) => batch,
            one => vec![one],
        };
        let mut answered = Vec::new();
        for message in messages {
            if let Some(version) = message
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
            {
                skillkernel_stdx::lock(&self.session).protocol_version = Some(version.to_owned());
            }
            let is_response = message.get("method").is_none()
                && (message.get("result").is_some() || message.get("error").is_some());
            if is_response {
                answered.extend(message.get("id").cloned());
            }
            self.push(message);
        }
        Ok(answered)
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

/// A response's body, refused past `limit` bytes without reading more.
async fn read_capped(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("its answer broke off: {e}"))?;
        if out.len() + chunk.len() > limit {
            return Err(format!("its answer is larger than {} KiB", limit >> 10));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Server-sent events, cut into their `data`.
#[derive(Default)]
struct EventStream {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no line end.
    scanned: usize,
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
        while let Some(end) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=self.scanned + end).collect();
            self.scanned = 0;
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
        self.scanned = self.buffer.len();
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
