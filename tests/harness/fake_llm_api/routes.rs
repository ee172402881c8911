//! The endpoints, in each API's own JSON and event shapes.

use std::io;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::{ApiScript, Flavor, Recorded, Refusal, Shared};
use crate::raw_http::{self as http, Chunked};

const JSON: &str = "application/json";
const SSE: &str = "text/event-stream";

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    http::serve(listener, shared, handle).await;
}

async fn handle(
    mut stream: TcpStream,
    request: http::Request,
    body: Value,
    shared: Arc<Shared>,
) -> io::Result<()> {
    shared
        .requests
        .lock()
        .expect("fake requests")
        .push(Recorded {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: body.clone(),
        });
    let flavor = shared.flavor;
    // One-shot refusals are taken under the lock, so each request gets its own.
    let (script, refusal) = {
        let mut script = shared.script.lock().expect("fake script");
        let is_generation = request.method == "POST";
        let refusal = if is_generation {
            script
                .refusals
                .pop_front()
                .or_else(|| script.always.clone())
        } else {
            None
        };
        (script.clone(), refusal)
    };
    if let Some(expected) = &script.api_key {
        let given = match flavor {
            Flavor::OpenAi => request
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned),
            Flavor::Anthropic => request.header("x-api-key").map(str::to_owned),
        };
        if given.as_deref() != Some(expected.as_str()) {
            let refusal = Refusal::json(401, "Incorrect API key provided");
            return refuse(&mut stream, &refusal).await;
        }
    }
    let chat_path = match flavor {
        Flavor::OpenAi => "/v1/chat/completions",
        Flavor::Anthropic => "/v1/messages",
    };
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/v1/models") => {
            let data: Vec<Value> = script
                .models
                .iter()
                .map(|id| match flavor {
                    Flavor::OpenAi => json!({"id": id, "object": "model", "owned_by": "fake", "max_model_len": 8192}),
                    Flavor::Anthropic => json!({"id": id, "type": "model", "display_name": id}),
                })
                .collect();
            let answer = json!({"object": "list", "data": data, "has_more": false});
            http::respond(&mut stream, 200, JSON, answer.to_string().as_bytes()).await
        }
        ("POST", path) if path == chat_path => {
            if let Some(refusal) = refusal {
                return refuse(&mut stream, &refusal).await;
            }
            let model = body.get("model").and_then(Value::as_str).unwrap_or("");
            if !script.models.iter().any(|m| m == model) {
                let refusal = Refusal::json(404, &format!("The model `{model}` does not exist"));
                return refuse(&mut stream, &refusal).await;
            }
            tokio::time::sleep(script.first_byte_delay).await;
            let offered = body["tools"].as_array().is_some_and(|t| !t.is_empty());
            if offered && !script.tool_calls.is_empty() && !has_tool_result(&body) {
                return stream_tool_calls(&mut stream, flavor, &script).await;
            }
            stream_answer(&mut stream, flavor, &script).await
        }
        _ => {
            http::respond(
                &mut stream,
                404,
                JSON,
                br#"{"error":{"message":"no such route"}}"#,
            )
            .await
        }
    }
}

async fn refuse(stream: &mut TcpStream, refusal: &Refusal) -> io::Result<()> {
    let extra: Vec<(&str, String)> = refusal
        .retry_after
        .map(|s| vec![("Retry-After", s.to_string())])
        .unwrap_or_default();
    http::respond_with(
        stream,
        refusal.status,
        refusal.content_type,
        &extra,
        refusal.body.as_bytes(),
    )
    .await
}

/// Whether the conversation holds a tool's result (OpenAI: a `tool`
/// turn; Anthropic: a `tool_result` block in a user turn).
fn has_tool_result(body: &Value) -> bool {
    body["messages"].as_array().is_some_and(|messages| {
        messages.iter().any(|m| {
            m["role"] == "tool"
                || m["content"]
                    .as_array()
                    .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
        })
    })
}

/// The script's tool calls as the API streams them: id and name first,
/// the arguments' JSON in pieces of 5 bytes, then the finish.
async fn stream_tool_calls(
    stream: &mut TcpStream,
    flavor: Flavor,
    script: &ApiScript,
) -> io::Result<()> {
    let mut events: Vec<String> = Vec::new();
    let pieces = |args: &Value| -> Vec<String> {
        let text = args.to_string();
        let chars: Vec<char> = text.chars().collect();
        chars.chunks(5).map(|c| c.iter().collect()).collect()
    };
    match flavor {
        Flavor::OpenAi => {
            for (i, (name, args)) in script.tool_calls.iter().enumerate() {
                events.push(sse(None, &json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": i, "id": format!("call_fake_{i}"), "type": "function", "function": {"name": name, "arguments": ""}}]}, "finish_reason": null}]})));
                for piece in pieces(args) {
                    events.push(sse(None, &json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, "finish_reason": null}]})));
                }
            }
            events.push(sse(None, &json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})));
            events.push("data: [DONE]\n\n".into());
        }
        Flavor::Anthropic => {
            events.push(sse(Some("message_start"), &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "usage": {"input_tokens": script.prompt_tokens, "output_tokens": 1}}})));
            events.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            events.push(sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}})));
            events.push(sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            for (i, (name, args)) in script.tool_calls.iter().enumerate() {
                let index = i + 1;
                events.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": format!("toolu_fake_{i}"), "name": name, "input": {}}})));
                for piece in pieces(args) {
                    events.push(sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
                }
                events.push(sse(
                    Some("content_block_stop"),
                    &json!({"type": "content_block_stop", "index": index}),
                ));
            }
            events.push(sse(Some("message_delta"), &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})));
            events.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
        }
    }
    send(stream, &events, script, false).await
}

/// The whole answer as server-sent events, cut as the script says.
async fn stream_answer(
    stream: &mut TcpStream,
    flavor: Flavor,
    script: &ApiScript,
) -> io::Result<()> {
    let mut events: Vec<String> = Vec::new();
    let mut dropped = false;
    if flavor == Flavor::Anthropic {
        events.push(sse(Some("message_start"), &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "usage": {"input_tokens": script.prompt_tokens, "output_tokens": 1}}})));
        events.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
        events.push(sse(Some("ping"), &json!({"type": "ping"})));
    }
    for (i, piece) in script.pieces.iter().enumerate() {
        if let Some((after, message)) = &script.error_after {
            if i == *after {
                events.push(error_event(flavor, message));
                return send(stream, &events, script, false).await;
            }
        }
        if script.drop_after == Some(i) {
            dropped = true;
            break;
        }
        events.push(match flavor {
            Flavor::OpenAi => sse(None, &json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})),
            Flavor::Anthropic => sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})),
        });
    }
    if dropped {
        return send(stream, &events, script, true).await;
    }
    let n = script.pieces.len();
    match flavor {
        Flavor::OpenAi => {
            events.push(sse(None, &json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
            if script.usage {
                events.push(sse(None, &json!({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": script.prompt_tokens, "completion_tokens": n, "total_tokens": script.prompt_tokens as usize + n}})));
            }
            events.push("data: [DONE]\n\n".into());
        }
        Flavor::Anthropic => {
            events.push(sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            events.push(sse(Some("message_delta"), &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": n}})));
            events.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
        }
    }
    send(stream, &events, script, false).await
}

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

fn error_event(flavor: Flavor, message: &str) -> String {
    match flavor {
        Flavor::OpenAi => sse(
            None,
            &json!({"error": {"message": message, "type": "server_error"}}),
        ),
        Flavor::Anthropic => sse(
            Some("error"),
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": message}}),
        ),
    }
}

/// Sends `events`, cut as the script says; `abort` drops the connection
/// without the chunked body's end.
async fn send(
    stream: &mut TcpStream,
    events: &[String],
    script: &ApiScript,
    abort: bool,
) -> io::Result<()> {
    let mut chunked = Chunked::start(stream, SSE, script.pause).await?;
    let body = events.concat().into_bytes();
    let pieces = if script.split {
        http::split_awkwardly(&body)
    } else {
        events.iter().map(|e| e.as_bytes().to_vec()).collect()
    };
    for piece in pieces {
        chunked.chunk(&piece).await?;
    }
    if abort {
        return stream.shutdown().await;
    }
    chunked.finish().await
}
