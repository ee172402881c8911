//! Tools a model may call: what a request offers ([`ToolSpec`]), what a
//! model asks for ([`ToolCall`]), and how a conversation carries both.
//!
//! Backends speak their own wire forms (Ollama's and OpenAI's `tools` and
//! `tool_calls`, Anthropic's `tool_use` blocks); the embedded engine has
//! none, and answers through constrained decoding of a schema that is
//! either a call of one of the tools or a final answer
//! ([`call_schema`]). This crate never runs a tool: the caller does.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Letters, digits, `_` and `-` (what every API accepts).
    pub name: String,
    pub description: String,
    /// A JSON Schema of the arguments object.
    pub parameters: Value,
}

/// Whether the model must call a tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// It may call tools or answer.
    #[default]
    Auto,
    /// It must call one of the tools (OpenAI's `required`, Anthropic's
    /// `any`; the embedded engine drops the answer from its schema).
    Required,
    /// It must answer now, calling nothing (OpenAI's and Anthropic's
    /// `none`; the embedded engine keeps only the answer in its schema).
    None,
}

/// A call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The backend's id for the call (made up when it has none), which the
    /// result names.
    pub id: String,
    pub name: String,
    /// The arguments object. A backend that sent text that is not JSON
    /// gives `{"_unparsed": TEXT}` so the caller can report it.
    pub arguments: Value,
}

/// The key of arguments a backend sent that were not JSON.
pub const UNPARSED: &str = "_unparsed";

/// Arguments as a backend sent them in text (OpenAI streams them in
/// pieces): the JSON object, or the text kept under [`UNPARSED`].
pub fn parse_arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ UNPARSED: text }),
    }
}

/// The schema an engine without native tool calls is held to: a call of
/// one of `tools` (`{"tool": NAME, "arguments": {…}}`) or the final
/// answer (`{"answer": "…"}`).
pub fn call_schema(tools: &[ToolSpec], choice: ToolChoice) -> Value {
    let offered = if choice == ToolChoice::None {
        &[][..]
    } else {
        tools
    };
    let mut choices: Vec<Value> = offered
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {
                    "tool": {"const": t.name},
                    "arguments": t.parameters,
                },
                "required": ["tool", "arguments"],
                "additionalProperties": false
            })
        })
        .collect();
    if choice != ToolChoice::Required {
        choices.push(json!({
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": false
        }));
    }
    json!({ "anyOf": choices })
}

/// How [`call_schema`] is explained to the model, in its system prompt.
pub fn call_instructions(tools: &[ToolSpec]) -> String {
    let mut text = String::from(
        "You can call tools. To call one, answer with only {\"tool\": NAME, \"arguments\": {...}}. \
         You will get its result, and can call another. When you know the answer, answer with \
         only {\"answer\": \"...\"}.\nTools:\n",
    );
    for t in tools {
        text.push_str(&format!(
            "- {}: {} Arguments: {}\n",
            t.name, t.description, t.parameters
        ));
    }
    text
}
