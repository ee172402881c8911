//! The Ollama endpoints, answering in Ollama's own JSON shapes.

use std::io;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::{ChatScript, Config, FakeModel, Recorded, Shared};
use crate::raw_http::{self as http, Chunked};

const CREATED_AT: &str = "2025-06-01T12:00:00.123456789Z";
const JSON: &str = "application/json; charset=utf-8";
const NDJSON: &str = "application/x-ndjson";

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
        .state
        .lock()
        .expect("fake state")
        .requests
        .push(Recorded {
            method: request.method.clone(),
            path: request.path.clone(),
            body: body.clone(),
        });
    let config = shared.config.lock().expect("fake config").clone();
    match (request.method.as_str(), request.path.as_str()) {
        ("GET" | "HEAD", "/") => {
            http::respond(
                &mut stream,
                200,
                "text/plain; charset=utf-8",
                b"Ollama is running",
            )
            .await
        }
        ("GET", "/api/version") => {
            send_json(&mut stream, 200, &json!({ "version": config.version })).await
        }
        ("GET", "/api/tags") => {
            let models: Vec<Value> = config.models.iter().map(tag).collect();
            send_json(&mut stream, 200, &json!({ "models": models })).await
        }
        ("POST", "/api/show") => match find(&config.models, &body) {
            Ok(model) => send_json(&mut stream, 200, &show(model)).await,
            Err(missing) => not_found(&mut stream, &missing).await,
        },
        ("DELETE", "/api/delete") => match find(&config.models, &body) {
            Ok(model) => {
                let name = model.name.clone();
                shared
                    .config
                    .lock()
                    .expect("fake config")
                    .models
                    .retain(|m| m.name != name);
                http::respond(&mut stream, 200, JSON, b"").await
            }
            Err(missing) => not_found(&mut stream, &missing).await,
        },
        ("POST", "/api/chat") => match find(&config.models, &body) {
            Ok(model) => {
                let streaming = body["stream"].as_bool().unwrap_or(true);
                let offered = body["tools"].as_array().is_some_and(|t| !t.is_empty());
                let answered = body["messages"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
                if offered && !answered && !config.chat.tool_calls.is_empty() {
                    let lines = vec![
                        json!({
                            "model": model.name,
                            "created_at": CREATED_AT,
                            "message": {"role": "assistant", "content": "", "tool_calls": config.chat.tool_calls},
                            "done": false,
                        }),
                        chat_done(&model.name, &config.chat, ""),
                    ];
                    stream_lines(&mut stream, &lines, config.chat.split, config.chat.pause).await
                } else {
                    chat(&mut stream, &shared, &config.chat, &model.name, streaming).await
                }
            }
            Err(missing) => not_found(&mut stream, &missing).await,
        },
        ("POST", "/api/pull") => pull(&mut stream, &shared, &config, &body).await,
        (_, path) if path.starts_with("/api/") => {
            http::respond(&mut stream, 405, "text/plain", b"405 method not allowed").await
        }
        _ => http::respond(&mut stream, 404, "text/plain", b"404 page not found").await,
    }
}

async fn send_json(stream: &mut TcpStream, status: u16, value: &Value) -> io::Result<()> {
    http::respond(stream, status, JSON, value.to_string().as_bytes()).await
}

async fn not_found(stream: &mut TcpStream, model: &str) -> io::Result<()> {
    let error = json!({ "error": format!("model '{model}' not found") });
    send_json(stream, 404, &error).await
}

/// The model a request names, by `model` or the older `name` field.
fn requested(body: &Value) -> String {
    body["model"]
        .as_str()
        .or_else(|| body["name"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn find<'a>(models: &'a [FakeModel], body: &Value) -> Result<&'a FakeModel, String> {
    let asked = requested(body);
    models.iter().find(|m| m.answers_to(&asked)).ok_or(asked)
}

/// A stable fake digest for a model.
fn digest(model: &FakeModel) -> String {
    let seed: u64 = model.name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{seed:016x}").repeat(4)
}

fn details(model: &FakeModel) -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": model.family,
        "families": [model.family],
        "parameter_size": model.parameter_size,
        "quantization_level": model.quantization_level,
    })
}

fn tag(model: &FakeModel) -> Value {
    json!({
        "name": model.name,
        "model": model.name,
        "modified_at": CREATED_AT,
        "size": model.size,
        "digest": digest(model),
        "details": details(model),
    })
}

fn show(model: &FakeModel) -> Value {
    let arch = &model.family;
    json!({
        "license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT",
        "modelfile": format!("# Modelfile generated by \"ollama show\"\nFROM /root/.ollama/models/blobs/sha256-{}\n", digest(model)),
        "parameters": "stop                           \"<|eot_id|>\"",
        "template": "{{ .Prompt }}",
        "details": details(model),
        "model_info": {
            "general.architecture": arch,
            "general.file_type": 15,
            "general.parameter_count": 3_212_749_888u64,
            format!("{arch}.context_length"): model.context_length,
            format!("{arch}.embedding_length"): 3072,
            format!("{arch}.block_count"): 28,
        },
        "capabilities": ["completion", "tools"],
        "modified_at": CREATED_AT,
    })
}

fn chat_line(model: &str, content: &str) -> Value {
    json!({
        "model": model,
        "created_at": CREATED_AT,
        "message": { "role": "assistant", "content": content },
        "done": false,
    })
}

fn chat_done(model: &str, script: &ChatScript, content: &str) -> Value {
    json!({
        "model": model,
        "created_at": CREATED_AT,
        "message": { "role": "assistant", "content": content },
        "done_reason": script.done_reason,
        "done": true,
        "total_duration": script.total_duration_ns,
        "load_duration": 1_334_875,
        "prompt_eval_count": script.prompt_eval_count,
        "prompt_eval_duration": script.prompt_eval_duration_ns,
        "eval_count": script.eval_count,
        "eval_duration": script.eval_duration_ns,
    })
}

async fn chat(
    stream: &mut TcpStream,
    shared: &Shared,
    script: &ChatScript,
    model: &str,
    streaming: bool,
) -> io::Result<()> {
    if !streaming {
        if let Some((_, message)) = &script.error_after {
            return send_json(stream, 500, &json!({ "error": message })).await;
        }
        return send_json(
            stream,
            200,
            &chat_done(model, script, &script.pieces.concat()),
        )
        .await;
    }
    let mut lines = Vec::new();
    let mut failed = false;
    for (i, piece) in script.pieces.iter().enumerate() {
        if let Some((after, message)) = &script.error_after {
            if i == *after {
                lines.push(json!({ "error": message }));
                failed = true;
                break;
            }
        }
        lines.push(chat_line(model, piece));
    }
    if !failed {
        lines.push(chat_done(model, script, ""));
    }
    let sent = stream_lines(stream, &lines, script.split, script.pause).await;
    if sent.is_err() {
        shared.state.lock().expect("fake state").chat_disconnects += 1;
    }
    sent
}

/// Writes NDJSON lines as a chunked answer, cut awkwardly when `split`.
async fn stream_lines(
    stream: &mut TcpStream,
    lines: &[Value],
    split: bool,
    pause: std::time::Duration,
) -> io::Result<()> {
    let mut body = Vec::new();
    let mut per_line = Vec::new();
    for line in lines {
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        body.extend_from_slice(&bytes);
        per_line.push(bytes);
    }
    let pieces = if split {
        http::split_awkwardly(&body)
    } else {
        per_line
    };
    let mut out = Chunked::start(stream, NDJSON, pause).await?;
    for piece in &pieces {
        out.chunk(piece).await?;
    }
    out.finish().await
}

async fn pull(
    stream: &mut TcpStream,
    shared: &Shared,
    config: &Config,
    body: &Value,
) -> io::Result<()> {
    let asked = requested(body);
    let mut lines = vec![json!({ "status": "pulling manifest" })];
    let found = config.registry.iter().find(|m| m.answers_to(&asked));
    let mut succeeded = false;
    match found {
        None => lines.push(json!({ "error": "pull model manifest: file does not exist" })),
        Some(model) => {
            let digest = format!("sha256:{}", digest(model));
            let status = format!("pulling {}", &digest[7..19]);
            let total = model.size;
            // Ollama leaves `completed` out while it is zero.
            lines.push(json!({ "status": status, "digest": digest, "total": total }));
            for quarter in 1..=4u64 {
                if quarter == 3 {
                    if let Some(message) = &config.pull_error {
                        lines.push(json!({ "error": message }));
                        break;
                    }
                }
                lines.push(json!({ "status": status, "digest": digest, "total": total, "completed": total * quarter / 4 }));
            }
            if config.pull_error.is_none() {
                lines.push(json!({ "status": "verifying sha256 digest" }));
                lines.push(json!({ "status": "writing manifest" }));
                lines.push(json!({ "status": "success" }));
                succeeded = true;
                let mut installed = model.clone();
                installed.name = if asked.contains(':') {
                    asked.clone()
                } else {
                    format!("{asked}:latest")
                };
                let mut live = shared.config.lock().expect("fake config");
                live.models.retain(|m| m.name != installed.name);
                live.models.push(installed);
            }
        }
    }
    if body["stream"].as_bool() == Some(false) {
        return match lines.last() {
            Some(last) if succeeded => send_json(stream, 200, last).await,
            Some(last) => send_json(stream, 500, last).await,
            None => send_json(stream, 500, &json!({ "error": "nothing to pull" })).await,
        };
    }
    stream_lines(stream, &lines, true, config.chat.pause).await
}
