//! Prompt cells: one chat turn with the session's model, streamed into the
//! notebook as it is generated.
//!
//! The answer is a Markdown display that is updated in place
//! (`update_display_data`, through [`LiveDisplay`]) and ends as
//! the full answer. The turn joins the session's conversation; an
//! interrupted turn keeps what was said so far.

use futures::StreamExt;
use serde_json::{json, Map, Value};
use skillkernel_protocol::content::StreamName;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationStats, Registry, Route, StreamEvent, TokenStream,
};

use crate::errors::KernelError;
use crate::exec_context::live_display::LiveDisplay;
use crate::exec_context::ExecContext;
use crate::session::SessionState;

/// Runs `text` as a chat turn of the session's conversation.
pub async fn run(ctx: &mut ExecContext<'_>, text: &str) -> Result<(), KernelError> {
    ask(ctx, text, true).await
}

/// `%%prompt`: the body with `{{var}}` filled from session variables, sent
/// on its own — no conversation before it, none kept after.
pub async fn run_one_shot(ctx: &mut ExecContext<'_>, template: &str) -> Result<(), KernelError> {
    let text = fill_variables(ctx, template)?;
    ask(ctx, &text, false).await
}

/// Replaces each `{{name}}` with the session variable `name`.
pub fn fill_variables(ctx: &ExecContext<'_>, template: &str) -> Result<String, KernelError> {
    ctx.shared.with_state(|state| fill_in(state, template))
}

fn fill_in(state: &SessionState, template: &str) -> Result<String, KernelError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(KernelError::Syntax(
                "`{{` without a closing `}}` in the prompt template".into(),
            ));
        };
        let name = after[..end].trim();
        let value = state
            .variables
            .get(name)
            .ok_or_else(|| KernelError::VariableNotFound(name.to_owned()))?;
        out.push_str(&crate::exec_context::values::display_value(value));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

async fn ask(ctx: &mut ExecContext<'_>, text: &str, remember: bool) -> Result<(), KernelError> {
    let Some(models) = ctx.shared.models() else {
        return Err(KernelError::NoModel);
    };
    let model = ctx.shared.current_model().unwrap_or_default();
    let user = ChatMessage::new("user", text.to_owned());
    let mut messages: Vec<ChatMessage> = models
        .system_prompt
        .iter()
        .map(|s| ChatMessage::new("system", s.clone()))
        .collect();
    if remember {
        ctx.shared
            .with_state(|s| messages.extend(s.conversation.iter().cloned()));
    }
    messages.push(user.clone());
    let request = CompletionRequest {
        model: model.clone(),
        messages,
        options: models.options.clone(),
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    };
    let (route, mut stream) = open(ctx, &models.registry, request).await?;
    let mut live = LiveDisplay::new(format!("answer-{}", ctx.request.header.msg_id));
    let mut stats: Option<GenerationStats> = None;
    let mut failure = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(StreamEvent::Text(piece)) => live.push(&mut ctx.out, &piece).await,
            Ok(StreamEvent::Done(s)) => stats = Some(s),
            // No tools are offered to a prompt cell.
            Ok(StreamEvent::ToolCall(_)) => {}
            Err(e) => failure = Some(e),
        }
    }
    live.finish(&mut ctx.out).await;
    let answer = live.into_text();
    // The turn joins the conversation, even when cut short, so the next
    // prompt sees what was said.
    if remember && !answer.is_empty() {
        let assistant = ChatMessage::new("assistant", answer.clone());
        ctx.shared.push_turn(user, assistant);
    }
    record(ctx, &route, stats.as_ref());
    if let Some(e) = failure {
        return Err(e.into());
    }
    if interrupted(ctx, stats.as_ref()) {
        return Err(KernelError::Interrupted);
    }
    Ok(())
}

/// Starts a model call for a cell: routed, the route's notice (a
/// fallback, a budget) shown on stderr.
pub(crate) async fn open(
    ctx: &mut ExecContext<'_>,
    registry: &Registry,
    request: CompletionRequest,
) -> Result<(Route, TokenStream), KernelError> {
    let cancel = ctx.cancel.child_token();
    let (route, stream) = registry
        .stream_for(&ctx.shared.usage_caller(None), request, cancel)
        .await
        .map_err(KernelError::from)?;
    if let Some(notice) = &route.notice {
        ctx.out
            .stream(StreamName::Stderr, &format!("{notice}\n"))
            .await;
    }
    Ok((route, stream))
}

/// A finished call's figures in the reply's `model` metadata and the
/// session's usage.
pub(crate) fn record(ctx: &mut ExecContext<'_>, route: &Route, stats: Option<&GenerationStats>) {
    let Some(stats) = stats else {
        return;
    };
    let model = route.spec();
    let mut metadata = generation_metadata(&model, stats);
    metadata["profile"] = json!(route.profile);
    if let Some(notice) = &route.notice {
        metadata["notice"] = json!(notice);
    }
    ctx.out.set_metadata("model", metadata);
    ctx.shared.record_model_usage(&model, stats);
}

/// Whether the cell was interrupted while the call ran.
pub(crate) fn interrupted(ctx: &ExecContext<'_>, stats: Option<&GenerationStats>) -> bool {
    ctx.cancel.is_cancelled() || stats.is_some_and(|s| s.finish_reason == "cancelled")
}

/// Token counts and speed, for the reply's metadata.
pub fn generation_metadata(model: &str, s: &GenerationStats) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(model));
    m.insert("prompt_tokens".into(), json!(s.prompt_tokens));
    m.insert("completion_tokens".into(), json!(s.completion_tokens));
    m.insert(
        "tokens_per_second".into(),
        json!((s.tokens_per_second() * 10.0).round() / 10.0),
    );
    m.insert(
        "time_to_first_token_ms".into(),
        json!(s.first_token_ms.map(|t| t.round())),
    );
    m.insert("total_ms".into(), json!(s.total_ms.round()));
    // Time waiting for a busy model, and prompt tokens a cached prefix
    // spared (both 0 where the backend does not say).
    m.insert("queue_ms".into(), json!(s.queue_ms.round()));
    m.insert("cached_prompt_tokens".into(), json!(s.cached_prompt_tokens));
    m.insert("finish_reason".into(), json!(s.finish_reason));
    m.insert("cached".into(), json!(s.cached));
    Value::Object(m)
}
