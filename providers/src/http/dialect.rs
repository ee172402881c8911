//! What differs between the HTTP APIs a remote backend can speak: the
//! request, the auth headers, the model list and the stream's events.
//! Everything else — hosts, failover, timeouts, errors, statistics — is
//! shared ([`super::RemoteProvider`]).

use serde_json::Value;

use crate::config::BackendConfig;
use crate::{CompletionRequest, ModelInfo};

/// One thing a stream event says.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Text(String),
    /// Token counts as the server reports them (either may be absent).
    Usage {
        prompt_tokens: Option<u32>,
        completion_tokens: Option<u32>,
    },
    /// A piece of a tool call: the call at `index` of this answer, its id
    /// and name when this piece carries them, and the next piece of its
    /// arguments' JSON text (OpenAI and Anthropic stream them in pieces).
    ToolCallPart {
        index: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// Why generation stopped, in the server's words.
    Finish(String),
    /// The server reported an error inside the stream.
    Error(String),
    /// The stream is complete.
    Done,
}

/// One HTTP API.
pub trait Dialect: Send + Sync + 'static {
    /// The kind's name, for messages (`OpenAI-compatible server`).
    fn describe(&self) -> &'static str;

    /// Headers that carry `key`.
    fn auth_headers(&self, config: &BackendConfig, key: Option<&str>) -> Vec<(String, String)>;

    /// The path, under the base URL, of the generation endpoint.
    fn chat_path(&self) -> &'static str;

    /// The JSON body of a streamed generation request.
    fn chat_body(&self, request: &CompletionRequest) -> Value;

    /// The models a `/models` answer lists, for `backend`.
    fn models(&self, backend: &str, body: &Value) -> Vec<ModelInfo>;

    /// What one server-sent event says (`event` is its `event:` field).
    fn decode(&self, event: Option<&str>, data: &str) -> Vec<Decoded>;

    /// `body` with its output schema asked for the older way, for servers
    /// that refuse the standard one; `None` when there is no other way.
    fn schema_fallback(&self, body: &Value) -> Option<Value> {
        let _ = body;
        None
    }

    /// The message inside an error answer's body, if it has the API's shape.
    fn error_message(&self, body: &Value) -> Option<String> {
        let error = body.get("error")?;
        error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())
            .map(str::to_owned)
    }
}
