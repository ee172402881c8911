use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ReplyStatus;

/// `comm_info_request` content.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CommInfoRequest {
    #[serde(default)]
    pub target_name: Option<String>,
}

/// `comm_info_reply` content: open comms by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommInfoReply {
    pub status: ReplyStatus,
    pub comms: Map<String, Value>,
}

/// `comm_open` content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CommOpen {
    pub comm_id: String,
    pub target_name: String,
    #[serde(default)]
    pub data: Map<String, Value>,
}

/// `comm_close` content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CommClose {
    pub comm_id: String,
    #[serde(default)]
    pub data: Map<String, Value>,
}
