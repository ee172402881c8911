use serde::{Deserialize, Serialize};

/// `input_request` content, sent on stdin to the client that asked for
/// execution with `allow_stdin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputRequest {
    pub prompt: String,
    pub password: bool,
}

/// `input_reply` content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InputReply {
    #[serde(default)]
    pub value: String,
}
