//! The OpenAI-compatible chat API: `/chat/completions` streamed with
//! server-sent events and `stream_options.include_usage`, `/models`.
//! Spoken by vLLM, llama-server, llama-cpp-python, LM Studio, LiteLLM,
//! Ollama's `/v1`, OpenAI, Groq and others.

use serde_json::{json, Map, Value};

use super::dialect::{Decoded, Dialect};
use crate::config::BackendConfig;
use crate::{ChatMessage, CompletionRequest, ModelInfo, OutputFormat, ToolChoice};

pub struct OpenAi;

impl Dialect for OpenAi {
    fn describe(&self) -> &'static str {
        "OpenAI-compatible server"
    }

    fn auth_headers(&self, _config: &BackendConfig, key: Option<&str>) -> Vec<(String, String)> {
        key.map(|k| vec![("authorization".into(), format!("Bearer {k}"))])
            .unwrap_or_default()
    }

    fn chat_path(&self) -> &'static str {
        "chat/completions"
    }

    fn chat_body(&self, request: &CompletionRequest) -> Value {
        let o = &request.options;
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), Value::Array(messages(&request.messages)));
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {"name": t.name, "description": t.description, "parameters": t.parameters}
                    })
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            let choice = match request.tool_choice {
                ToolChoice::Auto => "auto",
                ToolChoice::Required => "required",
                ToolChoice::None => "none",
            };
            body.insert("tool_choice".into(), json!(choice));
        }
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        body.insert("max_tokens".into(), json!(o.max_tokens));
        body.insert("temperature".into(), json!(o.temperature));
        if let Some(top_p) = o.top_p {
            body.insert("top_p".into(), json!(top_p));
        }
        if let Some(seed) = o.seed {
            body.insert("seed".into(), json!(seed));
        }
        if !o.stop.is_empty() {
            body.insert("stop".into(), json!(o.stop));
        }
        match &request.format {
            Some(OutputFormat::Json) => {
                body.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some(OutputFormat::JsonSchema { schema }) => {
                body.insert(
                    "response_format".into(),
                    json!({
                        "type": "json_schema",
                        "json_schema": {"name": "output", "schema": schema}
                    }),
                );
            }
            None => {}
        }
        Value::Object(body)
    }

    /// OpenAI, vLLM, llama-server, LM Studio and Ollama take the standard
    /// `json_schema`; llama-cpp-python's server takes only `json_object`
    /// with the schema beside it (and refuses the other with a 422).
    fn schema_fallback(&self, body: &Value) -> Option<Value> {
        let format = body.get("response_format")?;
        if format.get("type")?.as_str()? != "json_schema" {
            return None;
        }
        let schema = format.get("json_schema")?.get("schema")?.clone();
        let mut body = body.clone();
        body["response_format"] = json!({"type": "json_object", "schema": schema});
        Some(body)
    }

    fn models(&self, backend: &str, body: &Value) -> Vec<ModelInfo> {
        let Some(data) = body.get("data").and_then(Value::as_array) else {
            return Vec::new();
        };
        data.iter()
            .filter_map(|m| {
                let id = m.get("id")?.as_str()?;
                // vLLM says `max_model_len`; others `context_length`.
                let context = ["max_model_len", "context_length", "context_window"]
                    .iter()
                    .find_map(|k| m.get(*k).and_then(Value::as_u64))
                    .and_then(|n| u32::try_from(n).ok());
                Some(ModelInfo {
                    name: id.to_owned(),
                    backend: backend.to_owned(),
                    size_bytes: None,
                    family: m.get("owned_by").and_then(Value::as_str).map(str::to_owned),
                    quantization: None,
                    context_length: context,
                })
            })
            .collect()
    }

    fn decode(&self, _event: Option<&str>, data: &str) -> Vec<Decoded> {
        let data = data.trim();
        if data == "[DONE]" {
            return vec![Decoded::Done];
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return vec![Decoded::Error(format!(
                    "the server sent an event that is not JSON ({e}): {}",
                    preview(data)
                ))]
            }
        };
        if let Some(message) = self.error_message(&chunk) {
            return vec![Decoded::Error(message)];
        }
        let mut out = Vec::new();
        if let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        {
            let content = choice
                .get("delta")
                .and_then(|d| d.get("content"))
                .or_else(|| choice.get("text"))
                .and_then(Value::as_str);
            if let Some(text) = content.filter(|t| !t.is_empty()) {
                out.push(Decoded::Text(text.to_owned()));
            }
            let calls = choice
                .get("delta")
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array);
            for (n, call) in calls.into_iter().flatten().enumerate() {
                let function = call.get("function");
                let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
                out.push(Decoded::ToolCallPart {
                    index: call
                        .get("index")
                        .and_then(Value::as_u64)
                        .map_or(n, |i| i as usize),
                    id: text(call.get("id")),
                    name: text(function.and_then(|f| f.get("name"))),
                    arguments: text(function.and_then(|f| f.get("arguments"))).unwrap_or_default(),
                });
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                out.push(Decoded::Finish(reason.to_owned()));
            }
        } else if chunk.get("choices").is_none() && chunk.get("usage").is_none() {
            return vec![Decoded::Error(format!(
                "the server sent an event of an unknown shape: {}",
                preview(data)
            ))];
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            out.push(Decoded::Usage {
                prompt_tokens: count(usage, "prompt_tokens"),
                completion_tokens: count(usage, "completion_tokens"),
            });
        }
        out
    }
}

pub(super) fn count(value: &Value, key: &str) -> Option<u32> {
    value
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

/// The start of a piece of text, for an error message.
pub(super) fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// The conversation in the Chat Completions shape: an assistant turn's
/// calls as `tool_calls` (arguments as JSON text), a result as a `tool`
/// turn naming its call.
fn messages(messages: &[ChatMessage]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            if !m.tool_calls.is_empty() {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments.to_string()}
                        })
                    })
                    .collect();
                let content = if m.content.is_empty() {
                    Value::Null
                } else {
                    json!(m.content)
                };
                return json!({"role": "assistant", "content": content, "tool_calls": calls});
            }
            match &m.tool_call_id {
                Some(id) => json!({"role": "tool", "tool_call_id": id, "content": m.content}),
                None => json!({"role": m.role, "content": m.content}),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_finish_usage_and_done_are_read() {
        let d = OpenAi;
        assert_eq!(
            d.decode(
                None,
                r#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}"#
            ),
            vec![Decoded::Text("Hi".into())]
        );
        assert_eq!(
            d.decode(
                None,
                r#"{"choices":[{"delta":{},"finish_reason":"length"}],"usage":null}"#
            ),
            vec![Decoded::Finish("length".into())]
        );
        assert_eq!(
            d.decode(
                None,
                r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#
            ),
            vec![Decoded::Usage {
                prompt_tokens: Some(7),
                completion_tokens: Some(3)
            }]
        );
        assert_eq!(d.decode(None, "[DONE]"), vec![Decoded::Done]);
    }

    #[test]
    fn an_output_schema_becomes_response_format() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let mut request = CompletionRequest {
            model: "m".into(),
            messages: Vec::new(),
            options: crate::GenerationOptions::default(),
            format: Some(OutputFormat::JsonSchema {
                schema: schema.clone(),
            }),
            tools: Vec::new(),
            tool_choice: Default::default(),
        };
        let body = OpenAi.chat_body(&request);
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["schema"], schema);
        request.format = Some(OutputFormat::Json);
        let body = OpenAi.chat_body(&request);
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        request.format = None;
        assert!(OpenAi.chat_body(&request).get("response_format").is_none());
    }

    #[test]
    fn streamed_tool_call_pieces_are_read_with_their_index() {
        let d = OpenAi;
        let first = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"count_words","arguments":"{\"ar"}}]}}]}"#;
        assert_eq!(
            d.decode(None, first),
            vec![Decoded::ToolCallPart {
                index: 0,
                id: Some("call_a".into()),
                name: Some("count_words".into()),
                arguments: "{\"ar".into()
            }]
        );
        let rest = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"gs\": []}"}}]},"finish_reason":"tool_calls"}]}"#;
        assert_eq!(
            d.decode(None, rest),
            vec![
                Decoded::ToolCallPart {
                    index: 0,
                    id: None,
                    name: None,
                    arguments: "gs\": []}".into()
                },
                Decoded::Finish("tool_calls".into())
            ]
        );
    }

    #[test]
    fn errors_and_strange_events_say_what_came() {
        let d = OpenAi;
        assert_eq!(
            d.decode(None, r#"{"error":{"message":"out of memory","code":500}}"#),
            vec![Decoded::Error("out of memory".into())]
        );
        let strange = d.decode(None, r#"{"hello":1}"#);
        assert!(matches!(&strange[..], [Decoded::Error(m)] if m.contains("unknown shape")));
        let broken = d.decode(None, "{not json");
        assert!(matches!(&broken[..], [Decoded::Error(m)] if m.contains("not JSON")));
    }
}
