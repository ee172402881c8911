//! `tools/call` of a skill: the run, its progress, its result.
//!
//! * The arguments are the skill's: `input` plus its parameters, checked
//!   by the executor as any run's are (a bad one is a tool error the
//!   client's model can read and correct).
//! * While the run goes, a client that sent a `progressToken` gets
//!   `notifications/progress`: phases as they start and end, tool steps,
//!   and the answer's text as it streams (batched every
//!   [`PROGRESS_EVERY`]); `progress` counts what was reported.
//! * The request's cancellation (`notifications/cancelled`, or the HTTP
//!   client going away) interrupts the run as a notebook interrupt does.
//! * The result is the answer as text; a skill with an object output
//!   schema also returns it as `structuredContent`. A skill that fails
//!   gives a tool error (`isError`) with the error's code, message and
//!   hint; only an unknown tool is a JSON-RPC error.
//!
//! Conversation skills remember their turns in the session's own
//! [`Conversations`](skillkernel_skills::service::Conversations).

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, Peer, RoleServer};
use serde_json::Value;
use skillkernel_skills::exec::{Args, ExecEvent, RunOutput, RunRequest};
use skillkernel_skills::{ErrorCode, SkillError, SkillKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::catalog::output_object_schema;
use super::Session;
use crate::host::{Host, HostRefusal, OperationGuard};

/// Streamed text is sent at most this often.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// Marks an MCP request as work the shutdown waits for.
pub fn begin(host: &dyn Host, what: &str) -> Result<OperationGuard, McpError> {
    host.begin_operation(what)
        .map_err(|e| McpError::internal_error(e.to_string(), None))
}

/// A failed run as the tool result the client's model reads.
pub fn error_result(e: &SkillError) -> CallToolResult {
    let mut text = format!("{}: {}", e.code.as_str(), e.message);
    if !e.hint.is_empty() {
        text.push_str(&format!("\nhint: {}", e.hint));
    }
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn refused(e: HostRefusal) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.to_string())])
}

/// Runs skill `name` for a `tools/call`.
pub async fn run_skill(
    host: &Arc<dyn Host>,
    session: &Arc<Session>,
    name: &str,
    mut arguments: JsonObject,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let _operation = begin(host.as_ref(), name)?;
    let Some(skills) = host.skills() else {
        return Ok(refused(HostRefusal::NoSkills));
    };
    let guard = match skills.begin_execution(name).await {
        Ok(guard) => guard,
        Err(e) if e.code == ErrorCode::SkillNotFound => {
            return Err(McpError::invalid_params(
                format!("unknown tool `{name}`: {}", e.message),
                None,
            ))
        }
        Err(e) => return Ok(error_result(&e)),
    };
    let skill = Arc::clone(guard.skill());
    let needs_model = !matches!(skill.kind(), SkillKind::Command | SkillKind::Session);
    let ctx = match host.run_context(&session.id, needs_model) {
        Ok(ctx) => ctx,
        Err(e) => return Ok(refused(e)),
    };
    let (tool_guards, tool_skills) = match skills.tool_skills(&skill).await {
        Ok(held) => held,
        Err(e) => return Ok(error_result(&e)),
    };
    let input = match arguments.remove("input") {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let request = RunRequest {
        skill: Arc::clone(&skill),
        input,
        args: Args::Json(arguments),
        history: session.conversations.turns(&skill.meta.name),
        workdir: skills.working_dir.clone(),
        cancel: context.ct.child_token(),
        tool_skills,
        depth: 0,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executor = Arc::clone(&skills.executor);
    let running = executor.run(&ctx, request, move |event| {
        let _ = tx.send(event);
    });
    tokio::pin!(running);
    let mut progress = context
        .meta
        .get_progress_token()
        .map(|token| Progress::new(token, context.peer.clone()));
    let result = loop {
        tokio::select! {
            result = &mut running => break result,
            Some(event) = rx.recv() => if let Some(p) = progress.as_mut() { p.on_event(event).await },
            _ = tokio::time::sleep(PROGRESS_EVERY), if progress.as_ref().is_some_and(Progress::has_text) => {
                if let Some(p) = progress.as_mut() { p.send_text().await }
            }
        }
    };
    drop(tool_guards);
    drop(guard);
    host.run_ended(result.is_err());
    let output = match result {
        Ok(output) => output,
        Err(e) => return Ok(error_result(&e)),
    };
    session
        .conversations
        .extend(&skill.meta.name, &output.new_turns);
    Ok(answer(&skill, output))
}

fn answer(skill: &skillkernel_skills::Skill, output: RunOutput) -> CallToolResult {
    if output.interrupted {
        return CallToolResult::error(vec![ContentBlock::text(format!(
            "interrupted; the answer so far:\n{}",
            output.text
        ))]);
    }
    match (&output.json, output_object_schema(skill)) {
        (Some(json), Some(_)) => {
            let text = serde_json::to_string_pretty(json).unwrap_or_else(|_| output.text.clone());
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(json.clone());
            result
        }
        (Some(json), None) => CallToolResult::success(vec![ContentBlock::text(
            serde_json::to_string_pretty(json).unwrap_or(output.text),
        )]),
        (None, _) => CallToolResult::success(vec![ContentBlock::text(output.text)]),
    }
}

/// `notifications/progress` for one call.
struct Progress {
    token: ProgressToken,
    peer: Peer<RoleServer>,
    /// Notifications sent so far: the `progress` value, always rising.
    sent: u32,
    /// Answer text not sent yet.
    text: String,
    last: Instant,
}

impl Progress {
    fn new(token: ProgressToken, peer: Peer<RoleServer>) -> Self {
        Progress {
            token,
            peer,
            sent: 0,
            text: String::new(),
            last: Instant::now(),
        }
    }

    fn has_text(&self) -> bool {
        !self.text.is_empty()
    }

    async fn on_event(&mut self, event: ExecEvent) {
        let message = match event {
            ExecEvent::Text { text, .. } | ExecEvent::Output { text, .. } => {
                self.text.push_str(&text);
                if self.sent == 0 || self.last.elapsed() >= PROGRESS_EVERY {
                    self.send_text().await;
                }
                return;
            }
            ExecEvent::PhaseStarted { name, .. } => format!("▶ {name}"),
            ExecEvent::PhaseFinished(p) => format!("✓ {} ({})", p.name, p.model),
            ExecEvent::ToolCalled {
                tool, arguments, ..
            } => format!("→ {tool} {arguments}"),
            ExecEvent::ToolFinished(step) => {
                let mark = if step.ok { "✓" } else { "✗" };
                format!("{mark} {}", step.tool)
            }
            ExecEvent::Retry { reason, .. } => format!("retrying: {reason}"),
        };
        self.send_text().await;
        self.send(message).await;
    }

    async fn send_text(&mut self) {
        if !self.text.is_empty() {
            let text = std::mem::take(&mut self.text);
            self.send(text).await;
        }
    }

    async fn send(&mut self, message: String) {
        self.sent += 1;
        self.last = Instant::now();
        let mut param = ProgressNotificationParam::new(self.token.clone(), f64::from(self.sent));
        param.message = Some(message);
        if let Err(e) = self.peer.notify_progress(param).await {
            tracing::debug!(error = %e, "a progress notification was not sent");
        }
    }
}
