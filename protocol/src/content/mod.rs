//! Message contents, kernel side, protocol 5.3–5.5.
//!
//! Request types derive `Deserialize` with spec defaults so that a client
//! leaving out an optional field gets the documented behaviour; reply and
//! broadcast types derive `Serialize` and always emit every required field.
//! skillkernel's extension requests ([`ModelRequest`], [`SkillRequest`],
//! [`SandboxRequest`], [`StatusRequest`]) and their replies are here too,
//! shared by the kernel and `skillctl`.

mod comm;
mod execute;
mod extension;
mod introspection;
mod iopub;
mod kernel_info;
mod lifecycle;
mod stdin;

pub use comm::*;
pub use execute::*;
pub use extension::*;
pub use introspection::*;
pub use iopub::*;
pub use kernel_info::*;
pub use lifecycle::*;
pub use stdin::*;

use serde::{Deserialize, Serialize};

/// The `status` field shared by every reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyStatus {
    Ok,
    Error,
    Aborted,
}

/// An error as Jupyter shows it: exception name, value and traceback lines.
/// Carried by the IOPub `error` message and by every error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorContent {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl ErrorContent {
    /// An error whose traceback is its message, for errors with no stack.
    pub fn new(ename: impl Into<String>, evalue: impl Into<String>) -> Self {
        let ename = ename.into();
        let evalue = evalue.into();
        let traceback = vec![format!("\u{1b}[0;31m{ename}\u{1b}[0m: {evalue}")];
        ErrorContent {
            ename,
            evalue,
            traceback,
        }
    }
}

/// `{"status": "error", ename, evalue, traceback}`, the reply for a request
/// that failed or that this kernel does not support.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReply {
    pub status: ReplyStatus,
    #[serde(flatten)]
    pub error: ErrorContent,
}

impl ErrorReply {
    pub fn new(error: ErrorContent) -> Self {
        ErrorReply {
            status: ReplyStatus::Error,
            error,
        }
    }
}

/// `{"status": "aborted"}`.
#[derive(Debug, Clone, Serialize)]
pub struct AbortedReply {
    pub status: ReplyStatus,
}

impl Default for AbortedReply {
    fn default() -> Self {
        AbortedReply {
            status: ReplyStatus::Aborted,
        }
    }
}

/// A mime bundle: `{"text/plain": "...", "text/html": "..."}`.
pub type MimeBundle = serde_json::Map<String, serde_json::Value>;
