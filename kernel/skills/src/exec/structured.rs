//! Calls whose answer must be JSON valid for an output schema.
//!
//! The schema travels with the request (backends that can constrain do),
//! the prompt says what shape is wanted, and the answer is validated
//! here whatever the backend. An answer that does not validate is shown
//! to the model once, with what is wrong; a second miss fails the run
//! as `VALIDATION_ERROR` with the offending output in the hint.

use skillkernel_providers::ChatMessage;
use tokio::time::Instant;

use super::call::{Call, Run};
use super::events::{ExecEvent, PhaseResult};
use super::prompt::message;
use super::resilience::{call_with_retries, provider_error};
use crate::output::OutputSchema;
use crate::SkillError;

/// Tells the model the shape its answer must have: appended to the last
/// user message, where even a small model heeds it.
pub(crate) fn instruct(messages: &mut Vec<ChatMessage>, schema: &OutputSchema) {
    match messages.iter_mut().rev().find(|m| m.role == "user") {
        Some(last) => {
            last.content.push_str("\n\n");
            last.content.push_str(&schema.instruction());
        }
        None => messages.push(message("user", schema.instruction())),
    }
}

/// Makes `call` (with its transient-failure retries) and, when it has an
/// output schema, validates the answer, asking once more if it does not.
pub(crate) async fn answer(
    run: &Run<'_>,
    call: &Call,
    in_workflow: bool,
) -> Result<PhaseResult, SkillError> {
    let started = Instant::now();
    let first = call_with_retries(run, call)
        .await
        .map_err(|failed| provider_error(&failed, call, in_workflow))?;
    let Some(schema) = &call.output else {
        return Ok(first);
    };
    if first.interrupted() {
        return Ok(first);
    }
    let invalid = match schema.check(&first.text) {
        Ok(json) => {
            return Ok(PhaseResult {
                json: Some(json),
                ..first
            })
        }
        Err(invalid) => invalid,
    };
    tracing::info!(skill = run.skill, phase = %call.id, reason = %invalid.reason, "an answer did not match its output schema; asking once more");
    run.emitter.emit(ExecEvent::Retry {
        phase: call.id.clone(),
        attempt: first.attempts,
        delay: std::time::Duration::ZERO,
        reason: format!(
            "the answer does not match the output schema: {}",
            invalid.reason
        ),
    });
    let mut again = call.clone();
    again
        .messages
        .push(message("assistant", first.text.clone()));
    again
        .messages
        .push(message("user", schema.retry_message(&invalid)));
    let second = call_with_retries(run, &again)
        .await
        .map_err(|failed| provider_error(&failed, call, in_workflow))?;
    let merged = |json| PhaseResult {
        json,
        elapsed: started.elapsed(),
        attempts: first.attempts + second.attempts,
        prompt_tokens: first.prompt_tokens + second.prompt_tokens,
        completion_tokens: first.completion_tokens + second.completion_tokens,
        ..second.clone()
    };
    if second.interrupted() {
        return Ok(merged(None));
    }
    match schema.check(&second.text) {
        Ok(json) => Ok(merged(Some(json))),
        Err(invalid) => {
            let place = if in_workflow {
                format!("phase `{}`", call.id)
            } else {
                "the answer".to_owned()
            };
            Err(invalid.into_error(&place, &second.text))
        }
    }
}
