//! Surviving failure: retries with exponential backoff for transient
//! errors, and provider errors turned into skill errors with a code and a
//! remedy.
//!
//! Transient means [`ProviderError::Unavailable`]: the backends report
//! connection and transport failures that way (Ollama down, a dropped
//! connection, a profile with nothing reachable). A missing model, a bad
//! request, an inference error and a cancellation are never retried —
//! retrying cannot fix them. A call that already streamed text to the
//! caller is not retried either. The overall timeout and the circuit
//! breaker are applied by the executor around the whole run.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use skillkernel_providers::ProviderError;
use tokio::time::Instant;

use super::call::{Call, Failed, Run};
use super::events::{ExecEvent, PhaseResult};
use crate::model::Resilience;
use crate::{ErrorCode, SkillError};

/// Makes `call`, retrying transient failures up to `resilience.retries`
/// times. Interrupted during a backoff, it returns an interrupted result.
pub(crate) async fn call_with_retries(run: &Run<'_>, call: &Call) -> Result<PhaseResult, Failed> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failed = match call.once(run).await {
            Ok(mut result) => {
                result.attempts = attempt;
                result.elapsed = started.elapsed();
                return Ok(result);
            }
            Err(failed) => Failed {
                attempts: attempt,
                ..failed
            },
        };
        if failed.streamed || !is_transient(&failed.error) || attempt > run.resilience.retries {
            return Err(failed);
        }
        let delay = backoff(run.resilience, attempt);
        run.emitter.emit(ExecEvent::Retry {
            phase: call.id.clone(),
            attempt,
            delay,
            reason: failed.error.to_string(),
        });
        run.metrics.record_retry(run.skill);
        tracing::info!(skill = run.skill, phase = %call.id, attempt, ?delay, error = %failed.error, "retrying a skill's model call");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = run.cancel.cancelled() => {
                let mut result = call.interrupted(started);
                result.attempts = attempt;
                return Ok(result);
            }
        }
    }
}

pub(crate) fn is_transient(error: &ProviderError) -> bool {
    matches!(error, ProviderError::Unavailable { .. })
}

/// The wait after failed attempt `attempt` (from 1): `backoff_initial`
/// doubled each time, capped at `backoff_max`, less up to 10 % of jitter
/// so that runs failing together do not retry in step.
pub(crate) fn backoff(resilience: &Resilience, attempt: u32) -> Duration {
    let doubled = resilience.backoff_initial.saturating_mul(
        1u32.checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX),
    );
    let base = doubled.min(resilience.backoff_max);
    base.mul_f64(1.0 - jitter() * 0.1)
}

/// A number in [0, 1) that differs from call to call; it needs no quality.
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A provider error as the user sees it: `PROVIDER_UNAVAILABLE` for a
/// backend that cannot be reached, `SKILL_EXECUTION_ERROR` otherwise; the
/// message names the phase of a workflow.
pub(crate) fn provider_error(failed: &Failed, call: &Call, workflow: bool) -> SkillError {
    let (error, attempts) = (&failed.error, failed.attempts);
    let place = if workflow {
        format!("phase `{}` failed", call.id)
    } else {
        "the model call failed".to_owned()
    };
    let tries = if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    };
    let message = format!("{place} on `{}`{tries}: {error}", call.spec);
    let (code, hint) = match error {
        ProviderError::Unavailable { .. } => (
            ErrorCode::ProviderUnavailable,
            "start the backend (`ollama serve`) or route the skill elsewhere (its `routing`, or `%model use`); `%model status` shows what is up",
        ),
        ProviderError::ModelNotFound { .. } => (
            ErrorCode::SkillExecutionError,
            "pull the model (`%model pull NAME`) or change the skill's `routing` / the session's model (`%model use`)",
        ),
        ProviderError::InvalidModel { .. } => (
            ErrorCode::SkillExecutionError,
            "the model file is unusable: pull it again or route the skill to another model",
        ),
        ProviderError::BudgetExceeded(_) => (
            ErrorCode::SkillExecutionError,
            "`%usage` shows what was spent; route the skill to a local model or raise its budget",
        ),
        _ => (
            ErrorCode::SkillExecutionError,
            "see the message; a smaller `max_tokens` or another model may help, and `%skill info` shows the skill's routing",
        ),
    };
    SkillError::new(code, message, hint)
}

/// The run took longer than `resilience.timeout`.
pub(crate) fn timeout_error(resilience: &Resilience, attempts: u32) -> SkillError {
    SkillError::new(
        ErrorCode::SkillTimeout,
        format!(
            "the execution did not finish within {:.1} s ({attempts} model call{} made)",
            resilience.timeout.as_secs_f64(),
            if attempts == 1 { "" } else { "s" }
        ),
        "raise `resilience.timeout` in the manifest, lower `max_tokens`, or route the skill to a faster model",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap_with_a_little_jitter() {
        let r = Resilience {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            ..Resilience::default()
        };
        let expect = [100, 200, 350, 350, 350];
        for (attempt, ms) in (1..).zip(expect) {
            let d = backoff(&r, attempt).as_secs_f64() * 1e3;
            assert!(
                d <= ms as f64 && d >= ms as f64 * 0.9,
                "attempt {attempt}: {d} ms"
            );
        }
        assert!(backoff(&r, 200).as_millis() <= 350);
    }

    #[test]
    fn only_unavailable_backends_are_transient() {
        assert!(is_transient(&ProviderError::Unavailable {
            backend: "ollama".into(),
            reason: "down".into()
        }));
        for e in [
            ProviderError::ModelNotFound {
                model: "m".into(),
                hint: String::new(),
            },
            ProviderError::Inference("oom".into()),
            ProviderError::Cancelled,
            ProviderError::Other("x".into()),
        ] {
            assert!(!is_transient(&e), "{e}");
        }
    }
}
