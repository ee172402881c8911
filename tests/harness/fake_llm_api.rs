//! A fake OpenAI-compatible or Anthropic API on a real socket, for what a
//! real server cannot be made to do on cue.
//!
//! It speaks each API's shapes — `GET /v1/models`, a streamed
//! `POST /v1/chat/completions` (server-sent events, `[DONE]`, a usage
//! chunk) or `POST /v1/messages` (`message_start`, `content_block_delta`,
//! `message_delta`, `message_stop`) — over hand-written HTTP/1.1, so a test
//! decides how the bytes are cut: events across chunks and UTF-8
//! characters split inside. [`ApiScript`] scripts the rest: an error event
//! mid-stream, answers by status (401, 429 with `Retry-After`, 5xx, an HTML
//! page), a slow first byte, a connection dropped mid-answer. Every request
//! is recorded with its headers; [`FakeApi::stop`] kills the server.

mod routes;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which API the fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Anthropic,
}

/// A scripted non-success answer to a generation request.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// An error in the API's JSON shape.
    pub fn json(status: u16, message: &str) -> Refusal {
        Refusal {
            status,
            content_type: "application/json",
            body: serde_json::json!({"type": "error", "error": {"message": message, "type": "fake_error"}}).to_string(),
            retry_after: None,
        }
    }
}

/// How the fake answers.
#[derive(Debug, Clone)]
pub struct ApiScript {
    /// What `/v1/models` lists.
    pub models: Vec<String>,
    /// The answer's pieces, one event each.
    pub pieces: Vec<String>,
    /// Pause between HTTP chunks.
    pub pause: Duration,
    /// Cut every event line, and a multi-byte character in it, across chunks.
    pub split: bool,
    /// After this many pieces, an error event instead of the rest.
    pub error_after: Option<(usize, String)>,
    /// After this many pieces, close the connection without ending.
    pub drop_after: Option<usize>,
    /// Wait this long before the first byte of a generation answer.
    pub first_byte_delay: Duration,
    /// Answers to the next generation requests, one each, before streaming.
    pub refusals: VecDeque<Refusal>,
    /// Answer every generation request with this.
    pub always: Option<Refusal>,
    /// The key a request must carry (`Authorization: Bearer` or
    /// `x-api-key`); `None` accepts any.
    pub api_key: Option<String>,
    /// Send a usage report.
    pub usage: bool,
    pub prompt_tokens: u32,
    /// Calls (tool name, arguments) a request that offers `tools` gets
    /// instead of the pieces — unless its conversation already holds a
    /// tool result, which gets the pieces, as a model done with its tools
    /// would. The arguments' JSON is streamed in pieces of a few bytes,
    /// as both APIs do.
    pub tool_calls: Vec<(String, serde_json::Value)>,
}

impl Default for ApiScript {
    fn default() -> Self {
        ApiScript {
            models: vec!["fake-model".into()],
            pieces: vec!["Hello".into(), ", wörld".into(), " — done.".into()],
            pause: Duration::ZERO,
            split: true,
            error_after: None,
            drop_after: None,
            first_byte_delay: Duration::ZERO,
            refusals: VecDeque::new(),
            always: None,
            api_key: None,
            usage: true,
            prompt_tokens: 11,
            tool_calls: Vec::new(),
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    flavor: Flavor,
    script: Mutex<ApiScript>,
    requests: Mutex<Vec<Recorded>>,
}

/// A running fake; stops when dropped or [`FakeApi::stop`]ped.
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeApi {
    /// Starts on 127.0.0.1 with a free port, on the current runtime.
    pub async fn start(flavor: Flavor, script: ApiScript) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API");
        let addr = listener.local_addr().expect("fake API address");
        let shared = Arc::new(Shared {
            flavor,
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(routes::serve(listener, shared.clone()));
        FakeApi {
            addr,
            shared,
            accept: Some(accept),
            runtime: None,
        }
    }

    /// Starts on a runtime of its own, for tests that drive the daemon.
    pub fn start_blocking(flavor: Flavor, script: ApiScript) -> FakeApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime for the fake API");
        let mut fake = runtime.block_on(Self::start(flavor, script));
        fake.runtime = Some(runtime);
        fake
    }

    /// The base URL a backend is configured with: `http://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn configure(&self, change: impl FnOnce(&mut ApiScript)) {
        change(&mut self.shared.script.lock().expect("fake script"));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("fake requests").clone()
    }

    /// Generation requests received so far.
    pub fn generations(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    }

    /// Stops accepting connections: the port refuses from now on.
    pub fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
