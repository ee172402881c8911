use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::MimeBundle;

/// `stream` content: text written to stdout or stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub name: StreamName,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    Stdout,
    Stderr,
}

/// `display_data` and `update_display_data` content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisplayData {
    pub data: MimeBundle,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub transient: Map<String, Value>,
}

impl DisplayData {
    pub fn new(data: MimeBundle) -> Self {
        DisplayData {
            data,
            metadata: Map::new(),
            transient: Map::new(),
        }
    }

    /// Tags the display with a `display_id` so later `update_display_data`
    /// messages replace it in place.
    pub fn with_display_id(mut self, id: &str) -> Self {
        self.transient
            .insert("display_id".into(), Value::String(id.into()));
        self
    }
}

/// `status` content: `busy`, `idle` or `starting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub execution_state: ExecutionState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionState {
    Busy,
    Idle,
    Starting,
}

/// `clear_output` content.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ClearOutput {
    pub wait: bool,
}

/// `iopub_welcome` content (protocol 5.4): sent to a new IOPub subscriber
/// alone, once its subscription is in, so it knows it will see what
/// follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IopubWelcome {
    pub subscription: String,
}
