use thiserror::Error;

use crate::signing::SignatureError;

/// Why an inbound multipart message was rejected.
///
/// Every variant is a reason to log and drop the message; none of them is a
/// reason for the kernel to stop serving.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("message has no <IDS|MSG> delimiter frame")]
    MissingDelimiter,
    #[error("message is truncated: expected at least 5 frames after the delimiter, got {0}")]
    Truncated(usize),
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("message has {count} identity frames, over the limit of {limit}")]
    TooManyIdentities { count: usize, limit: usize },
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("{frame} frame is not valid JSON: {source}")]
    Json {
        frame: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{frame} frame must be a JSON object")]
    NotAnObject { frame: &'static str },
    #[error("header lacks the required field `{0}`")]
    MissingHeaderField(&'static str),
    #[error("content of {msg_type} is invalid: {source}")]
    Content {
        msg_type: String,
        #[source]
        source: serde_json::Error,
    },
}
