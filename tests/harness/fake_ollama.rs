//! A fake Ollama server on a real socket, for testing the Ollama backend and
//! the daemon without Ollama.
//!
//! It speaks Ollama's REST shapes — `GET /api/tags`, `POST /api/show`,
//! `POST /api/chat` (NDJSON stream or `stream: false`), `POST /api/pull`
//! (NDJSON progress), `DELETE /api/delete`, `GET /api/version`, and
//! `404 {"error":"model '…' not found"}` for unknown models — over
//! hand-written HTTP/1.1, so a test controls exactly how the bytes are
//! chunked: streamed answers are cut so that an NDJSON line and a
//! multi-byte UTF-8 character each straddle two HTTP chunks.
//!
//! Scripts: the chat answer and its timing ([`ChatScript`]), a pull that
//! fails half-way ([`Config::pull_error`]). Every request is recorded
//! ([`FakeOllama::requests`]), and a chat stream whose client hung up is
//! counted ([`FakeOllama::chat_disconnects`]).

mod routes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A model the fake has installed or can pull.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeModel {
    /// Full name with tag, e.g. `llama3.2:latest`.
    pub name: String,
    pub size: u64,
    pub family: String,
    pub parameter_size: String,
    pub quantization_level: String,
    pub context_length: u64,
}

impl FakeModel {
    /// A llama-family model with plausible figures.
    pub fn llama(name: &str) -> FakeModel {
        FakeModel {
            name: name.to_owned(),
            size: 2_019_393_189,
            family: "llama".into(),
            parameter_size: "3.2B".into(),
            quantization_level: "Q4_K_M".into(),
            context_length: 131_072,
        }
    }

    /// Whether `asked` names this model (`llama3.2` is `llama3.2:latest`).
    pub fn answers_to(&self, asked: &str) -> bool {
        self.name == asked || self.name == format!("{asked}:latest")
    }
}

/// What `/api/chat` answers, and how.
#[derive(Debug, Clone)]
pub struct ChatScript {
    /// The answer's pieces, one per NDJSON line (Ollama sends about a token
    /// per line).
    pub pieces: Vec<String>,
    /// Pause between HTTP chunks; raise it for a slow, cancellable answer.
    pub pause: Duration,
    /// Cut every line, and a multi-byte character in it, across two chunks.
    pub split: bool,
    /// After this many pieces, send `{"error": message}` instead of the rest.
    pub error_after: Option<(usize, String)>,
    /// Calls (`{function: {name, arguments}}`) a request that offers
    /// `tools` gets instead of the pieces — unless its conversation
    /// already holds a `tool` result, which gets the pieces, as a model
    /// done with its tools would. One NDJSON line with every call, as
    /// Ollama sends them.
    pub tool_calls: Vec<serde_json::Value>,
    pub done_reason: String,
    pub prompt_eval_count: u32,
    pub eval_count: u32,
    pub prompt_eval_duration_ns: u64,
    pub eval_duration_ns: u64,
    pub total_duration_ns: u64,
}

impl Default for ChatScript {
    fn default() -> Self {
        ChatScript {
            pieces: ["Paris", " —", " café", " 🇫🇷", "."]
                .map(str::to_owned)
                .to_vec(),
            pause: Duration::from_millis(5),
            split: true,
            error_after: None,
            tool_calls: Vec::new(),
            done_reason: "stop".into(),
            prompt_eval_count: 26,
            eval_count: 5,
            prompt_eval_duration_ns: 342_546_000,
            eval_duration_ns: 1_535_599_000,
            total_duration_ns: 2_083_583_458,
        }
    }
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Config {
    pub version: String,
    /// Installed models (`/api/tags`, `/api/show`, chat, delete).
    pub models: Vec<FakeModel>,
    /// Models `/api/pull` can fetch; others fail the way Ollama does
    /// ("pull model manifest: file does not exist").
    pub registry: Vec<FakeModel>,
    /// A pull that sends this error line after some download progress.
    pub pull_error: Option<String>,
    pub chat: ChatScript,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: "0.6.2".into(),
            models: vec![FakeModel::llama("llama3.2:latest")],
            registry: vec![FakeModel::llama("qwen2.5:0.5b")],
            pull_error: None,
            chat: ChatScript::default(),
        }
    }
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The JSON body, `Null` when there was none or it was not JSON.
    pub body: serde_json::Value,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<Recorded>,
    chat_disconnects: usize,
}

struct Shared {
    config: Mutex<Config>,
    state: Mutex<State>,
}

/// A running fake; stops accepting when dropped.
pub struct FakeOllama {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    /// Set by [`FakeOllama::start_blocking`]: the runtime the fake runs on.
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeOllama {
    /// Starts on 127.0.0.1 with a free port, on the current tokio runtime.
    pub async fn start(config: Config) -> FakeOllama {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Ollama");
        let addr = listener.local_addr().expect("fake Ollama address");
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            state: Mutex::new(State::default()),
        });
        let accept = tokio::spawn(routes::serve(listener, shared.clone()));
        FakeOllama {
            addr,
            shared,
            accept,
            runtime: None,
        }
    }

    /// Starts on a runtime of its own, for tests that are not async (e.g.
    /// ones that drive the daemon binary).
    pub fn start_blocking(config: Config) -> FakeOllama {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime for the fake Ollama");
        let mut fake = runtime.block_on(Self::start(config));
        fake.runtime = Some(runtime);
        fake
    }

    /// `http://127.0.0.1:<port>`, for `OLLAMA_HOST` or the constructor.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the behaviour from now on.
    pub fn configure(&self, change: impl FnOnce(&mut Config)) {
        change(&mut self.shared.config.lock().expect("fake config"));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .state
            .lock()
            .expect("fake state")
            .requests
            .clone()
    }

    /// The last request to `path` (e.g. `/api/chat`).
    pub fn last_request(&self, path: &str) -> Option<Recorded> {
        self.requests().into_iter().rev().find(|r| r.path == path)
    }

    /// Names of the installed models now (pulls add, deletes remove).
    pub fn installed(&self) -> Vec<String> {
        let config = self.shared.config.lock().expect("fake config");
        config.models.iter().map(|m| m.name.clone()).collect()
    }

    /// Chat streams that ended because the client went away.
    pub fn chat_disconnects(&self) -> usize {
        self.shared
            .state
            .lock()
            .expect("fake state")
            .chat_disconnects
    }
}

/// An address that accepts no connection and refuses none: a listener with
/// a full backlog that never accepts, so the kernel drops further SYNs, as a
/// firewalled or powered-off host does. Keep the returned value alive.
pub struct Blackhole {
    _listener: std::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
    pub url: String,
}

impl Blackhole {
    pub fn new() -> Blackhole {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let addr = socket.local_addr().expect("address");
        let listener = socket.listen(0).and_then(|l| l.into_std()).expect("listen");
        // Fill the accept queue (backlog 0 holds one or two on Linux).
        let queued = (0..4)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
            })
            .collect();
        Blackhole {
            _listener: listener,
            _queued: queued,
            url: format!("http://{addr}"),
        }
    }
}

impl Default for Blackhole {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.accept.abort();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
