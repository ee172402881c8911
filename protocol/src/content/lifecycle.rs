use serde::{Deserialize, Serialize};

use super::ReplyStatus;

/// `shutdown_request` content.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub struct ShutdownRequest {
    #[serde(default)]
    pub restart: bool,
}

/// `shutdown_reply` content.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShutdownReply {
    pub status: ReplyStatus,
    pub restart: bool,
}

/// `interrupt_reply` content.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct InterruptReply {
    pub status: ReplyStatus,
}
