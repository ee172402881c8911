//! Anthropic's Messages API: `/messages` streamed with server-sent events
//! (`message_start`, `content_block_delta`, `message_delta`, `error` …),
//! the system prompt in its own field, `/models`, the `anthropic-version`
//! and `x-api-key` headers.

use serde_json::{json, Map, Value};

use super::dialect::{Decoded, Dialect};
use super::openai::{count, preview};
use crate::config::BackendConfig;
use crate::{ChatMessage, CompletionRequest, ModelInfo, ToolChoice};

pub struct Anthropic;

impl Dialect for Anthropic {
    fn describe(&self) -> &'static str {
        "Anthropic API"
    }

    fn auth_headers(&self, config: &BackendConfig, key: Option<&str>) -> Vec<(String, String)> {
        let mut headers = vec![(
            "anthropic-version".to_owned(),
            config.anthropic_version.clone(),
        )];
        if let Some(key) = key {
            headers.push(("x-api-key".into(), key.to_owned()));
        }
        headers
    }

    fn chat_path(&self) -> &'static str {
        "messages"
    }

    fn chat_body(&self, request: &CompletionRequest) -> Value {
        let o = &request.options;
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == "system")
            .map(|m| m.content.as_str())
            .collect();
        let messages = messages(&request.messages);
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("max_tokens".into(), json!(o.max_tokens));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), json!(true));
        if !system.is_empty() {
            body.insert("system".into(), json!(system.join("\n\n")));
        }
        body.insert("temperature".into(), json!(o.temperature.min(1.0)));
        if let Some(top_p) = o.top_p {
            body.insert("top_p".into(), json!(top_p));
        }
        if let Some(top_k) = o.top_k {
            body.insert("top_k".into(), json!(top_k));
        }
        if !o.stop.is_empty() {
            body.insert("stop_sequences".into(), json!(o.stop));
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            let choice = match request.tool_choice {
                ToolChoice::Auto => "auto",
                ToolChoice::Required => "any",
                ToolChoice::None => "none",
            };
            body.insert("tool_choice".into(), json!({"type": choice}));
        }
        Value::Object(body)
    }

    fn models(&self, backend: &str, body: &Value) -> Vec<ModelInfo> {
        let Some(data) = body.get("data").and_then(Value::as_array) else {
            return Vec::new();
        };
        data.iter()
            .filter_map(|m| {
                Some(ModelInfo {
                    name: m.get("id")?.as_str()?.to_owned(),
                    backend: backend.to_owned(),
                    size_bytes: None,
                    family: m
                        .get("display_name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    quantization: None,
                    context_length: None,
                })
            })
            .collect()
    }

    fn decode(&self, event: Option<&str>, data: &str) -> Vec<Decoded> {
        let value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return vec![Decoded::Error(format!(
                    "the server sent an event that is not JSON ({e}): {}",
                    preview(data)
                ))]
            }
        };
        // The `type` field repeats the event name; either will do.
        let kind = event
            .or_else(|| value.get("type").and_then(Value::as_str))
            .unwrap_or("");
        match kind {
            "message_start" => {
                let usage = value.get("message").and_then(|m| m.get("usage"));
                usage
                    .map(|u| {
                        vec![Decoded::Usage {
                            prompt_tokens: count(u, "input_tokens"),
                            completion_tokens: None,
                        }]
                    })
                    .unwrap_or_default()
            }
            "content_block_delta"
                if value
                    .get("delta")
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    == Some("input_json_delta") =>
            {
                let partial = value
                    .get("delta")
                    .and_then(|d| d.get("partial_json"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                vec![Decoded::ToolCallPart {
                    index: block_index(&value),
                    id: None,
                    name: None,
                    arguments: partial.to_owned(),
                }]
            }
            "content_block_delta" => value
                .get("delta")
                .filter(|d| d.get("type").and_then(Value::as_str) == Some("text_delta"))
                .and_then(|d| d.get("text"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(|t| vec![Decoded::Text(t.to_owned())])
                .unwrap_or_default(),
            "message_delta" => {
                let mut out = Vec::new();
                if let Some(u) = value.get("usage") {
                    out.push(Decoded::Usage {
                        prompt_tokens: count(u, "input_tokens"),
                        completion_tokens: count(u, "output_tokens"),
                    });
                }
                if let Some(reason) = value
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    out.push(Decoded::Finish(reason.to_owned()));
                }
                out
            }
            "content_block_start" => {
                let block = value.get("content_block");
                match block.and_then(|b| b.get("type")).and_then(Value::as_str) {
                    Some("tool_use") => {
                        let text = |k: &str| {
                            block
                                .and_then(|b| b.get(k))
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        };
                        vec![Decoded::ToolCallPart {
                            index: block_index(&value),
                            id: text("id"),
                            name: text("name"),
                            arguments: String::new(),
                        }]
                    }
                    _ => Vec::new(),
                }
            }
            "message_stop" => vec![Decoded::Done],
            "error" => vec![Decoded::Error(
                self.error_message(&value).unwrap_or_else(|| preview(data)),
            )],
            // ping, content_block_start/stop, and types added later.
            _ => Vec::new(),
        }
    }
}

fn block_index(event: &Value) -> usize {
    event.get("index").and_then(Value::as_u64).unwrap_or(0) as usize
}

/// The conversation without its system turns, in the Messages shape: an
/// assistant turn's calls as `tool_use` blocks, results as `tool_result`
/// blocks of one user turn (the API wants user and assistant turns to
/// alternate, so consecutive results share one).
fn messages(messages: &[ChatMessage]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for m in messages.iter().filter(|m| m.role != "system") {
        if let Some(id) = &m.tool_call_id {
            let block = json!({"type": "tool_result", "tool_use_id": id, "content": m.content});
            match out.last_mut() {
                Some(last) if last["role"] == "user" && last["content"].is_array() => {
                    if let Some(blocks) = last["content"].as_array_mut() {
                        blocks.push(block);
                    }
                }
                _ => out.push(json!({"role": "user", "content": [block]})),
            }
            continue;
        }
        if !m.tool_calls.is_empty() {
            let mut blocks = Vec::new();
            if !m.content.is_empty() {
                blocks.push(json!({"type": "text", "text": m.content}));
            }
            for c in &m.tool_calls {
                blocks.push(
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
                );
            }
            out.push(json!({"role": "assistant", "content": blocks}));
            continue;
        }
        out.push(json!({"role": m.role, "content": m.content}));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatMessage, GenerationOptions};

    #[test]
    fn the_system_prompt_goes_in_its_own_field() {
        let request = CompletionRequest {
            model: "claude".into(),
            messages: vec![
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "Hi"),
            ],
            options: GenerationOptions::default(),
            format: None,
            tools: Vec::new(),
            tool_choice: Default::default(),
        };
        let body = Anthropic.chat_body(&request);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["messages"], json!([{"role": "user", "content": "Hi"}]));
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn a_stream_of_events_gives_text_usage_and_its_end() {
        let d = Anthropic;
        let start =
            r#"{"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1}}}"#;
        assert_eq!(
            d.decode(Some("message_start"), start),
            vec![Decoded::Usage {
                prompt_tokens: Some(12),
                completion_tokens: None
            }]
        );
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Pa"}}"#;
        assert_eq!(
            d.decode(Some("content_block_delta"), delta),
            vec![Decoded::Text("Pa".into())]
        );
        let end = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#;
        assert_eq!(
            d.decode(Some("message_delta"), end),
            vec![
                Decoded::Usage {
                    prompt_tokens: None,
                    completion_tokens: Some(5)
                },
                Decoded::Finish("end_turn".into())
            ]
        );
        assert_eq!(d.decode(Some("ping"), r#"{"type":"ping"}"#), vec![]);
        let error =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            d.decode(Some("error"), error),
            vec![Decoded::Error("Overloaded".into())]
        );
    }
}
