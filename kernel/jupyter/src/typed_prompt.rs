//! `%%prompt --schema SCHEMA` and `%%prompt --json`: a one-shot prompt
//! whose answer must be JSON — valid for the schema (inline JSON or a
//! `.json` file), or any JSON object.
//!
//! The schema goes to the backend (the embedded engine and Ollama hold
//! generation to it); the answer is validated here, asked once more with
//! what is wrong, and shown as `application/json` once it validates. It
//! is not streamed: half a JSON document helps nobody.

use futures::StreamExt;
use serde_json::Value;
use skillkernel_protocol::content::StreamName;
use skillkernel_providers::{ChatMessage, CompletionRequest, GenerationStats, StreamEvent};
use skillkernel_skills::output::OutputSchema;

use crate::errors::KernelError;
use crate::exec_context::ExecContext;
use crate::json_answer;
use crate::prompt;

const USAGE: &str = "%%prompt [--json | --schema {…JSON Schema…} | --schema FILE.json]";

fn usage(message: impl Into<String>) -> KernelError {
    KernelError::Usage {
        magic: "%%prompt".into(),
        message: message.into(),
        usage: USAGE.into(),
    }
}

/// The shape `%%prompt`'s arguments ask for; `None` for free text.
pub fn parse_args(args: &str) -> Result<Option<OutputSchema>, KernelError> {
    let args = args.trim();
    if args.is_empty() {
        return Ok(None);
    }
    if args == "--json" {
        return Ok(Some(OutputSchema::any_object()));
    }
    let Some(rest) = args.strip_prefix("--schema") else {
        return Err(usage(format!("unknown argument `{args}`")));
    };
    let written = rest.trim();
    if written.is_empty() || !rest.starts_with(char::is_whitespace) {
        return Err(usage(
            "`--schema` needs a JSON Schema or the path of a .json file",
        ));
    }
    let schema: Value = if written.starts_with('{') {
        serde_json::from_str(written).map_err(|e| usage(format!("the schema is not JSON: {e}")))?
    } else {
        let text = std::fs::read_to_string(written)
            .map_err(|e| usage(format!("cannot read the schema file {written}: {e}")))?;
        serde_json::from_str(&text).map_err(|e| usage(format!("{written} is not JSON: {e}")))?
    };
    OutputSchema::compile(schema)
        .map(Some)
        .map_err(|problem| usage(format!("the schema is not usable: {problem}")))
}

/// Asks `text` on its own and shows the answer as JSON valid for `schema`.
pub async fn run(
    ctx: &mut ExecContext<'_>,
    text: &str,
    schema: &OutputSchema,
) -> Result<(), KernelError> {
    let Some(models) = ctx.shared.models() else {
        return Err(KernelError::NoModel);
    };
    let mut messages: Vec<ChatMessage> = models
        .system_prompt
        .iter()
        .map(|s| message("system", s.clone()))
        .collect();
    messages.push(message(
        "user",
        format!("{text}\n\n{}", schema.instruction()),
    ));
    let mut request = CompletionRequest {
        model: ctx.shared.current_model().unwrap_or_default(),
        messages,
        options: models.options.clone(),
        format: Some(schema.format()),
        tools: Vec::new(),
        tool_choice: Default::default(),
    };
    let mut asked_again = false;
    loop {
        let answer = call(ctx, &models.registry, request.clone()).await?;
        match schema.check(&answer) {
            Ok(json) => {
                ctx.out.display(json_answer::display(&json)).await;
                return Ok(());
            }
            Err(invalid) if asked_again => {
                return Err(KernelError::Skill(
                    invalid.into_error("the answer", &answer),
                ));
            }
            Err(invalid) => {
                ctx.out
                    .stream(
                        StreamName::Stderr,
                        &format!(
                            "The answer does not match the schema ({}); asking once more.\n",
                            invalid.reason
                        ),
                    )
                    .await;
                request.messages.push(message("assistant", answer));
                request
                    .messages
                    .push(message("user", schema.retry_message(&invalid)));
                asked_again = true;
            }
        }
    }
}

fn message(role: &str, content: String) -> ChatMessage {
    ChatMessage::new(role, content)
}

/// One model call, drained: its text (the reply's `model` metadata and
/// the usage records are written as for any prompt cell).
async fn call(
    ctx: &mut ExecContext<'_>,
    registry: &skillkernel_providers::Registry,
    request: CompletionRequest,
) -> Result<String, KernelError> {
    let (route, mut stream) = prompt::open(ctx, registry, request).await?;
    let mut text = String::new();
    let mut stats: Option<GenerationStats> = None;
    while let Some(event) = stream.next().await {
        match event.map_err(KernelError::from)? {
            StreamEvent::Text(piece) => text.push_str(&piece),
            StreamEvent::Done(s) => stats = Some(s),
            StreamEvent::ToolCall(_) => {}
        }
    }
    prompt::record(ctx, &route, stats.as_ref());
    if prompt::interrupted(ctx, stats.as_ref()) {
        return Err(KernelError::Interrupted);
    }
    Ok(text)
}
