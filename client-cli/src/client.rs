//! [`KernelClient`]: a connection to one kernel.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skillkernel_protocol::content::{ExecuteRequest, ExtensionRequest};
use skillkernel_protocol::{
    stdin, ConnectionInfo, Header, Message, ProtocolError, RequestType, Signer, WireLimits,
};
use skillkernel_transport::{ClientSockets, FrameReceiver, TransportError};
use thiserror::Error;

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("invalid message from the kernel: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("no answer from the kernel within {0:?}; is it running?")]
    Timeout(Duration),
}

/// Which request channel a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Shell,
    Control,
}

/// Options of an `execute_request`.
#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    pub silent: bool,
    pub store_history: bool,
    pub allow_stdin: bool,
    pub stop_on_error: bool,
    pub user_expressions: serde_json::Map<String, Value>,
    /// The request's `metadata` (e.g. a W3C `traceparent`).
    pub metadata: serde_json::Map<String, Value>,
    /// Give up waiting after this long.
    pub timeout: Duration,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        ExecuteOptions {
            silent: false,
            store_history: true,
            allow_stdin: true,
            stop_on_error: true,
            user_expressions: serde_json::Map::new(),
            metadata: serde_json::Map::new(),
            timeout: Duration::from_secs(3600),
        }
    }
}

/// What came back from one execution.
#[derive(Debug, Clone)]
pub struct ExecuteOutcome {
    pub reply: Message,
    /// Every IOPub message with this request as parent, in order,
    /// `status` messages included.
    pub iopub: Vec<Message>,
}

impl ExecuteOutcome {
    /// `ok`, `error` or `aborted`.
    pub fn status(&self) -> &str {
        self.reply.content["status"].as_str().unwrap_or("")
    }

    /// IOPub messages of `msg_type`.
    pub fn of_type<'a>(&'a self, msg_type: &'a str) -> impl Iterator<Item = &'a Message> + 'a {
        self.iopub.iter().filter(move |m| m.msg_type() == msg_type)
    }

    /// All `stream` text for `name` (`stdout` / `stderr`), joined.
    pub fn stream_text(&self, name: &str) -> String {
        self.of_type("stream")
            .filter(|m| m.content["name"] == name)
            .filter_map(|m| m.content["text"].as_str())
            .collect()
    }
}

/// Receives a cell's output as it arrives.
pub trait OutputHandler {
    /// Called for every IOPub message belonging to the request.
    fn on_iopub(&mut self, msg: &Message);
    /// Answers an `input_request`; `None` declines (an empty reply is sent).
    fn on_input_request(&mut self, prompt: &str, password: bool) -> Option<String> {
        let _ = (prompt, password);
        None
    }
}

/// A handler that keeps nothing (the outcome still holds every message).
pub struct Quiet;

impl OutputHandler for Quiet {
    fn on_iopub(&mut self, _msg: &Message) {}
}

/// A connection to a kernel.
pub struct KernelClient {
    sockets: ClientSockets,
    signer: Signer,
    session: String,
    limits: WireLimits,
    /// IOPub messages read while waiting for something else.
    iopub_backlog: Vec<Message>,
}

fn new_session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl KernelClient {
    /// Connects over ZeroMQ to the kernel `info` describes.
    pub async fn connect(info: &ConnectionInfo) -> Result<Self, ClientError> {
        let session = new_session_id();
        // Shell and stdin share the session as identity, as jupyter_client
        // does, so input requests come back to this client.
        let sockets = skillkernel_transport::zmq::connect(info, session.as_bytes()).await?;
        Ok(Self::from_parts(sockets, info.signer(), session))
    }

    /// Wraps already-connected sockets (e.g. the in-process transport).
    pub fn from_sockets(sockets: ClientSockets, signer: Signer) -> Self {
        Self::from_parts(sockets, signer, new_session_id())
    }

    fn from_parts(sockets: ClientSockets, signer: Signer, session: String) -> Self {
        KernelClient {
            sockets,
            signer,
            session,
            limits: WireLimits::default(),
            iopub_backlog: Vec::new(),
        }
    }

    /// The sockets, the signer and the session id, for a caller that reads
    /// the channels concurrently itself (`skillctl mcp`).
    pub fn into_parts(self) -> (ClientSockets, Signer, String) {
        (self.sockets, self.signer, self.session)
    }

    /// This client's session id (the `session` of its headers).
    pub fn session(&self) -> &str {
        &self.session
    }

    /// A request message from this client.
    pub fn message(&self, msg_type: &str, content: Value) -> Message {
        Message::new(Header::new(msg_type, &self.session, "skillctl"), content)
    }

    /// An extension request (`model_request` …) from this client: its
    /// type and content both come from `request`.
    pub fn extension_message<R: ExtensionRequest>(&self, request: &R) -> Message {
        Message::new(
            Header::new(R::TYPE.request(), &self.session, "skillctl"),
            request,
        )
    }

    /// Signs and sends `msg` on shell or control.
    pub async fn send(&self, target: Target, msg: &Message) -> Result<(), ClientError> {
        let channel = match target {
            Target::Shell => &self.sockets.shell,
            Target::Control => &self.sockets.control,
        };
        channel.sender.send(msg.encode(&self.signer)).await?;
        Ok(())
    }

    /// Sends raw frames on shell, bypassing signing (for robustness tests).
    pub async fn send_raw_shell(&self, frames: Vec<bytes::Bytes>) -> Result<(), ClientError> {
        self.sockets.shell.sender.send(frames).await?;
        Ok(())
    }

    async fn recv_on(
        receiver: &mut Box<dyn FrameReceiver>,
        signer: &Signer,
        limits: &WireLimits,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let frames = tokio::time::timeout(timeout, receiver.recv())
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        Ok(Message::decode(frames, signer, limits)?)
    }

    /// The next message on shell or control.
    pub async fn recv(
        &mut self,
        target: Target,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let receiver = match target {
            Target::Shell => &mut self.sockets.shell.receiver,
            Target::Control => &mut self.sockets.control.receiver,
        };
        Self::recv_on(receiver, &self.signer, &self.limits, timeout).await
    }

    /// The next IOPub message.
    pub async fn recv_iopub(&mut self, timeout: Duration) -> Result<Message, ClientError> {
        if !self.iopub_backlog.is_empty() {
            return Ok(self.iopub_backlog.remove(0));
        }
        Self::recv_on(&mut self.sockets.iopub, &self.signer, &self.limits, timeout).await
    }

    /// The next message on stdin (an `input_request`).
    pub async fn recv_stdin(&mut self, timeout: Duration) -> Result<Message, ClientError> {
        Self::recv_on(
            &mut self.sockets.stdin.receiver,
            &self.signer,
            &self.limits,
            timeout,
        )
        .await
    }

    /// Answers an `input_request`. `parent` is the request being answered;
    /// `None` sends an empty parent header, as `jupyter_client` does.
    pub async fn send_input_reply(
        &self,
        value: &str,
        parent: Option<&Message>,
    ) -> Result<(), ClientError> {
        let header = Header::new(stdin::INPUT_REPLY, &self.session, "skillctl");
        let content = json!({ "value": value });
        let reply = match parent {
            Some(parent) => parent.child(header, content),
            None => Message::new(header, content),
        };
        self.sockets
            .stdin
            .sender
            .send(reply.encode(&self.signer))
            .await?;
        Ok(())
    }

    /// Sends a request and waits for the reply to it (other replies on the
    /// channel are skipped).
    pub async fn request(
        &mut self,
        target: Target,
        msg_type: &str,
        content: Value,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let msg = self.message(msg_type, content);
        self.send(target, &msg).await?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self.recv(target, left).await?;
            if reply.parent_header.msg_id().as_deref() == Some(msg.header.msg_id.as_str()) {
                return Ok(reply);
            }
        }
    }

    /// Pings the heartbeat and waits for the echo.
    pub async fn heartbeat(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let ping = bytes::Bytes::from(uuid::Uuid::new_v4().to_string());
        tokio::time::timeout(timeout, async {
            self.sockets
                .heartbeat
                .sender
                .send(vec![ping.clone()])
                .await?;
            let echo = self.sockets.heartbeat.receiver.recv().await?;
            Ok::<_, ClientError>(echo)
        })
        .await
        .map_err(|_| ClientError::Timeout(timeout))??;
        Ok(())
    }

    /// Waits until the kernel answers `kernel_info_request` and this
    /// client's IOPub subscription is live (any
    /// message arrived), as `jupyter_client`'s `wait_for_ready` does.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Message, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(timeout));
            }
            let info = self
                .request(
                    Target::Shell,
                    RequestType::KernelInfo.request(),
                    json!({}),
                    left,
                )
                .await?;
            let wait =
                Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now()));
            if self.recv_iopub(wait).await.is_ok() {
                // Drain what is already there (busy, idle).
                while self.recv_iopub(Duration::from_millis(50)).await.is_ok() {}
                return Ok(info);
            }
        }
    }

    /// Runs `code` and waits for both its reply and its `idle`, handing
    /// output to `handler` as it comes and answering input requests.
    pub async fn execute(
        &mut self,
        code: &str,
        options: &ExecuteOptions,
        handler: &mut dyn OutputHandler,
    ) -> Result<ExecuteOutcome, ClientError> {
        let mut msg = Message::new(
            Header::new(RequestType::Execute.request(), &self.session, "skillctl"),
            ExecuteRequest {
                code: code.to_owned(),
                silent: options.silent,
                store_history: options.store_history,
                user_expressions: options.user_expressions.clone(),
                allow_stdin: options.allow_stdin,
                stop_on_error: options.stop_on_error,
            },
        );
        msg.metadata = options.metadata.clone();
        self.send(Target::Shell, &msg).await?;
        self.collect(&msg.header.msg_id, options.timeout, handler)
            .await
    }

    /// Collects the reply and IOPub output of an already-sent request.
    pub async fn collect(
        &mut self,
        msg_id: &str,
        timeout: Duration,
        handler: &mut dyn OutputHandler,
    ) -> Result<ExecuteOutcome, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reply = None;
        let mut iopub = Vec::new();
        let mut idle = false;
        let mine = |m: &Message| is_child_of(m, msg_id);
        // Output that arrived while an earlier call waited for something else.
        let backlog = std::mem::take(&mut self.iopub_backlog);
        for m in backlog {
            self.sort_iopub(m, msg_id, &mut idle, &mut iopub, handler);
        }
        while reply.is_none() || !idle {
            let sockets = &mut self.sockets;
            tokio::select! {
                frames = sockets.shell.receiver.recv(), if reply.is_none() => {
                    let m = Message::decode(frames?, &self.signer, &self.limits)?;
                    if mine(&m) {
                        reply = Some(m);
                    }
                }
                frames = sockets.iopub.recv(), if !idle => {
                    let m = Message::decode(frames?, &self.signer, &self.limits)?;
                    self.sort_iopub(m, msg_id, &mut idle, &mut iopub, handler);
                }
                frames = sockets.stdin.receiver.recv() => {
                    let m = Message::decode(frames?, &self.signer, &self.limits)?;
                    if m.msg_type() == stdin::INPUT_REQUEST {
                        let prompt = m.content["prompt"].as_str().unwrap_or("");
                        let password = m.content["password"].as_bool().unwrap_or(false);
                        let value = handler.on_input_request(prompt, password).unwrap_or_default();
                        self.send_input_reply(&value, Some(&m)).await?;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(ClientError::Timeout(timeout)),
            }
        }
        Ok(ExecuteOutcome {
            reply: reply.unwrap_or_else(|| Message::new(Header::new("", "", ""), json!({}))),
            iopub,
        })
    }

    /// Routes an IOPub message: to `iopub` and the handler when it belongs
    /// to `msg_id` (noting its `idle`), else to the backlog for later calls.
    fn sort_iopub(
        &mut self,
        m: Message,
        msg_id: &str,
        idle: &mut bool,
        iopub: &mut Vec<Message>,
        handler: &mut dyn OutputHandler,
    ) {
        if is_child_of(&m, msg_id) {
            *idle |= is_idle(&m);
            handler.on_iopub(&m);
            iopub.push(m);
        } else {
            self.iopub_backlog.push(m);
        }
    }

    /// A handle that can send `interrupt_request` while `execute` runs.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter {
            sender: self.sockets.control.sender.clone(),
            signer: self.signer.clone(),
            session: self.session.clone(),
        }
    }
}

fn is_child_of(m: &Message, msg_id: &str) -> bool {
    m.parent_header.msg_id().as_deref() == Some(msg_id)
}

fn is_idle(m: &Message) -> bool {
    m.msg_type() == "status" && m.content["execution_state"] == "idle"
}

/// Sends `interrupt_request` on control.
#[derive(Clone)]
pub struct Interrupter {
    sender: std::sync::Arc<dyn skillkernel_transport::FrameSender>,
    signer: Signer,
    session: String,
}

impl Interrupter {
    pub async fn interrupt(&self) -> Result<(), ClientError> {
        let msg = Message::new(
            Header::new(RequestType::Interrupt.request(), &self.session, "skillctl"),
            json!({}),
        );
        self.sender.send(msg.encode(&self.signer)).await?;
        Ok(())
    }
}
