//! The shape a reply must take, for backends that can hold a model to it.
//!
//! A request with an [`OutputFormat`] asks the backend to emit JSON: the
//! embedded engine masks tokens with a grammar compiled from the schema
//! (see `candle::constrain`), Ollama gets it as `format`, OpenAI-compatible
//! servers as `response_format`. Backends that cannot constrain ignore it;
//! the caller validates every answer either way.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What a constrained reply must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputFormat {
    /// Any JSON object — what Ollama's `format: "json"` and OpenAI's
    /// `json_object` mean.
    Json,
    /// A JSON value valid for `schema` (JSON Schema, draft 2020-12 subset).
    JsonSchema { schema: Value },
}

impl OutputFormat {
    /// The JSON Schema the reply must satisfy.
    pub fn schema(&self) -> Value {
        match self {
            OutputFormat::Json => json!({"type": "object"}),
            OutputFormat::JsonSchema { schema } => schema.clone(),
        }
    }
}
