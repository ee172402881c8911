//! skillkernel's extension messages: `model_request`, `skill_request`,
//! `sandbox_request`, `status_request` and `mcp_request`, and their replies.
//!
//! One contract for both ends of the wire: the kernel parses requests into
//! these types and builds its replies from them; `skillctl` builds its
//! requests from them and reads the replies with them. `docs/protocol.md`
//! documents each field.
//!
//! A request is an enum tagged by its `action` field
//! (`{"action": "use", "model": "smollm2"}` is [`ModelRequest::Use`]);
//! [`ExtensionRequest::parse`] reads one from a message's content and says
//! precisely what is wrong with content that is not one ([`RequestError`]).
//! A reply's content is a [`Reply`]: `{"status": "ok", …}` with the
//! request's answer, or `{"status": "error", ename, evalue, traceback}`.

mod mcp;
mod model;
mod parse;
mod sandbox;
mod skill;
mod skill_share;
mod status;

pub use mcp::*;
pub use model::*;
pub use parse::RequestError;
pub use sandbox::*;
pub use skill::*;
pub use skill_share::*;
pub use status::*;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ErrorContent;
use crate::RequestType;

/// A reply's content: `{"status": "ok", …T}` or `{"status": "error", …E}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Reply<T, E = ErrorContent> {
    Ok(T),
    Error(E),
}

impl<T, E> Reply<T, E> {
    /// The answer, or the error.
    pub fn into_result(self) -> Result<T, E> {
        match self {
            Reply::Ok(answer) => Ok(answer),
            Reply::Error(error) => Err(error),
        }
    }
}

impl<T, E> From<Result<T, E>> for Reply<T, E> {
    fn from(result: Result<T, E>) -> Self {
        match result {
            Ok(answer) => Reply::Ok(answer),
            Err(error) => Reply::Error(error),
        }
    }
}

/// An error with what to do about it: the error of a `skill_reply`
/// (`hint` is the skill error's remedy, `""` when there is none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorWithHint {
    #[serde(flatten)]
    pub error: ErrorContent,
    #[serde(default)]
    pub hint: String,
}

/// One of skillkernel's extension requests: its message type, the answer
/// its reply carries, and how its content is read.
pub trait ExtensionRequest: Serialize + DeserializeOwned {
    /// The request's message type; the reply's is [`RequestType::reply`].
    const TYPE: RequestType;
    /// What a `status: ok` reply carries besides `status`.
    type Answer: Serialize + DeserializeOwned;
    /// What a `status: error` reply carries besides `status`.
    type Error: Serialize + DeserializeOwned;

    /// Reads a request from a message's content.
    fn parse(content: &Value) -> Result<Self, RequestError> {
        parse::by_action(content)
    }

    /// The `action`s this request knows, in the order the docs list them
    /// (empty for a request without actions).
    fn actions() -> &'static [&'static str] {
        parse::actions::<Self>()
    }
}

/// The whole content of the reply to `R`.
pub type ReplyTo<R> = Reply<<R as ExtensionRequest>::Answer, <R as ExtensionRequest>::Error>;

#[cfg(test)]
mod tests;
