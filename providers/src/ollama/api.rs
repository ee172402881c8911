//! Ollama's REST shapes that skillkernel reads and writes itself.
//!
//! ollama-rs 0.3.6 models `/api/tags` and `/api/show` without their
//! `details` object (family, quantization level) and has no `/api/version`,
//! so those answers are read here. Unknown fields are ignored and missing
//! ones defaulted, so newer Ollama versions still parse.

use serde::{Deserialize, Serialize};

use crate::{ChatMessage, GenerationOptions};

/// `GET /api/version`.
#[derive(Debug, Deserialize)]
pub struct Version {
    pub version: String,
}

/// `GET /api/tags`.
#[derive(Debug, Deserialize)]
pub struct Tags {
    #[serde(default)]
    pub models: Vec<TagModel>,
}

#[derive(Debug, Deserialize)]
pub struct TagModel {
    pub name: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub details: Details,
}

/// The `details` object of `/api/tags` and `/api/show`.
#[derive(Debug, Default, Deserialize)]
pub struct Details {
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub quantization_level: Option<String>,
}

/// `POST /api/show` request.
#[derive(Debug, Serialize)]
pub struct ShowRequest<'a> {
    pub model: &'a str,
}

/// `POST /api/show` answer.
#[derive(Debug, Deserialize)]
pub struct Show {
    #[serde(default)]
    pub details: Details,
    /// GGUF metadata: `general.architecture`, `<arch>.context_length`, ….
    #[serde(default)]
    pub model_info: serde_json::Map<String, serde_json::Value>,
}

impl Show {
    pub fn architecture(&self) -> Option<&str> {
        self.model_info.get("general.architecture")?.as_str()
    }

    /// `<arch>.context_length`, else any `*.context_length` key.
    pub fn context_length(&self) -> Option<u32> {
        let by_arch = self
            .architecture()
            .and_then(|arch| self.model_info.get(&format!("{arch}.context_length")));
        let value = by_arch.or_else(|| {
            self.model_info
                .iter()
                .find(|(k, _)| k.ends_with(".context_length"))
                .map(|(_, v)| v)
        })?;
        value.as_u64().and_then(|n| u32::try_from(n).ok())
    }
}

/// `POST /api/chat` request.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    /// In Ollama's shape ([`wire_messages`]).
    pub messages: Vec<serde_json::Value>,
    pub stream: bool,
    pub options: Options,
    /// `"json"`, or a JSON Schema the reply must satisfy (Ollama ≥ 0.5
    /// holds generation to it with its own grammar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    /// `[{type: function, function: {name, description, parameters}}]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<serde_json::Value>,
}

/// The conversation as Ollama reads it: an assistant turn's calls as
/// `tool_calls: [{function: {name, arguments}}]`, a result as a `tool`
/// turn with `tool_name`.
pub fn wire_messages(messages: &[ChatMessage]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .map(|m| {
            let mut v = serde_json::json!({"role": m.role, "content": m.content});
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| serde_json::json!({"function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            if let Some(name) = &m.tool_name {
                v["tool_name"] = serde_json::json!(name);
            }
            v
        })
        .collect()
}

/// The tools as Ollama's `tools`.
pub fn wire_tools(tools: &[crate::ToolSpec]) -> Vec<serde_json::Value> {
    tools
        .iter()
        .map(|t| {
            serde_json::json!({
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters}
            })
        })
        .collect()
}

/// Ollama's generation options (Modelfile parameter names).
#[derive(Debug, Serialize)]
pub struct Options {
    pub num_predict: u32,
    pub temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// Ollama reads the seed as a signed integer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

impl From<&GenerationOptions> for Options {
    fn from(o: &GenerationOptions) -> Self {
        Options {
            num_predict: o.max_tokens,
            temperature: o.temperature,
            top_k: o.top_k,
            top_p: o.top_p,
            repeat_penalty: o.repeat_penalty,
            seed: o.seed.map(|s| (s & i64::MAX as u64) as i64),
            stop: o.stop.clone(),
        }
    }
}

/// One line of the `/api/chat` stream (or the whole answer with
/// `stream: false`). Durations are nanoseconds.
#[derive(Debug, Default, Deserialize)]
pub struct ChatChunk {
    #[serde(default)]
    pub message: Option<ChunkMessage>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub done_reason: Option<String>,
    #[serde(default)]
    pub total_duration: Option<u64>,
    #[serde(default)]
    pub prompt_eval_count: Option<u32>,
    #[serde(default)]
    pub prompt_eval_duration: Option<u64>,
    #[serde(default)]
    pub eval_count: Option<u32>,
    #[serde(default)]
    pub eval_duration: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChunkMessage {
    #[serde(default)]
    pub content: String,
    /// Calls the model made (Ollama sends each whole, arguments parsed).
    #[serde(default)]
    pub tool_calls: Vec<ChunkToolCall>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChunkToolCall {
    #[serde(default)]
    pub function: ChunkFunction,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChunkFunction {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: serde_json::Value,
}
