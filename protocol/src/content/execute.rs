use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{MimeBundle, ReplyStatus};

fn yes() -> bool {
    true
}

/// `execute_request` content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ExecuteRequest {
    pub code: String,
    #[serde(default)]
    pub silent: bool,
    #[serde(default = "yes")]
    pub store_history: bool,
    #[serde(default)]
    pub user_expressions: Map<String, Value>,
    #[serde(default = "yes")]
    pub allow_stdin: bool,
    #[serde(default = "yes")]
    pub stop_on_error: bool,
}

/// `execute_reply` content for `status: ok`. Errors use
/// [`ExecuteErrorReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecuteReply {
    pub status: ReplyStatus,
    pub execution_count: u64,
    /// Payloads such as `page`; deprecated by the spec but what
    /// pagers in Jupyter front ends still read.
    #[serde(default)]
    pub payload: Vec<Value>,
    #[serde(default)]
    pub user_expressions: Map<String, Value>,
}

/// `execute_reply` content for `status: error`.
#[derive(Debug, Clone, Serialize)]
pub struct ExecuteErrorReply {
    pub status: ReplyStatus,
    pub execution_count: u64,
    #[serde(flatten)]
    pub error: super::ErrorContent,
    pub payload: Vec<Value>,
    pub user_expressions: Map<String, Value>,
}

/// The `page` payload: front ends show `data` in a pager.
pub fn page_payload(data: MimeBundle, start: u64) -> Value {
    serde_json::json!({"source": "page", "data": data, "start": start})
}

/// IOPub `execute_input`: the code being run, rebroadcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecuteInput {
    pub code: String,
    pub execution_count: u64,
}

/// IOPub `execute_result`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecuteResult {
    pub execution_count: u64,
    pub data: MimeBundle,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}
