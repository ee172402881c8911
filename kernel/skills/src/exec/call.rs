//! One model call: a request through the providers' registry, streamed,
//! stopped when the run is cancelled.
//!
//! The retry loop around it is in [`super::resilience`]. A call never
//! decides whether to retry; it reports whether it already streamed text
//! to the caller, since a call that did must not be repeated (the notebook
//! would show the text twice).

use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
use skillkernel_providers::usage::Caller;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, GenerationStats, ProviderError, Registry,
    StreamEvent, ToolChoice, ToolSpec,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{Emitter, ExecEvent, PhaseResult};
use crate::metrics::SkillMetrics;
use crate::model::Resilience;
use crate::output::OutputSchema;

/// What one run shares between its calls.
pub(crate) struct Run<'a> {
    pub registry: &'a Registry,
    /// Tripped by the caller's interrupt, a failed workflow phase, or the
    /// end of the run.
    pub cancel: CancellationToken,
    pub emitter: Emitter<'a>,
    pub metrics: &'a SkillMetrics,
    /// The skill's name, the metrics key.
    pub skill: &'a str,
    /// Who the usage ledger records the run's model calls under.
    pub caller: Caller,
    pub resilience: &'a Resilience,
    /// Model calls made so far, retries included.
    pub attempts: AtomicU32,
}

/// A model call to make.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub id: String,
    pub name: String,
    /// A model, `name@backend` or a profile.
    pub spec: String,
    pub messages: Vec<ChatMessage>,
    pub options: GenerationOptions,
    /// Whether its text is the skill's answer, streamed to the caller.
    /// (A call with an output schema never streams: its answer is shown
    /// once it validates.)
    pub streams_answer: bool,
    /// The JSON Schema the answer must satisfy.
    pub output: Option<OutputSchema>,
    /// Tools the model may call instead of answering (a tool loop's step).
    pub tools: Vec<ToolSpec>,
    /// Whether it must call one.
    pub tool_choice: ToolChoice,
}

/// A call that failed.
#[derive(Debug)]
pub(crate) struct Failed {
    pub error: ProviderError,
    /// Some of its text already reached the caller.
    pub streamed: bool,
    /// Calls made, retries included.
    pub attempts: u32,
}

impl Call {
    fn streams(&self) -> bool {
        self.streams_answer && self.output.is_none()
    }

    /// The result of a call that was interrupted before it answered.
    pub(crate) fn interrupted(&self, started: Instant) -> PhaseResult {
        self.result(String::new(), self.spec.clone(), None, started, None)
    }

    fn result(
        &self,
        text: String,
        model: String,
        profile: Option<String>,
        started: Instant,
        stats: Option<GenerationStats>,
    ) -> PhaseResult {
        let (prompt_tokens, completion_tokens, cached, finish_reason) = match stats {
            Some(s) => (
                s.prompt_tokens,
                s.completion_tokens,
                s.cached,
                s.finish_reason,
            ),
            None => (0, 0, false, "cancelled".to_owned()),
        };
        PhaseResult {
            id: self.id.clone(),
            name: self.name.clone(),
            text,
            model,
            profile,
            elapsed: started.elapsed(),
            prompt_tokens,
            completion_tokens,
            cached,
            attempts: 1,
            finish_reason,
            tool_calls: Vec::new(),
            json: None,
        }
    }

    /// Makes the call once. Interrupted, it returns what was said so far
    /// with `finish_reason` "cancelled".
    pub(crate) async fn once(&self, run: &Run<'_>) -> Result<PhaseResult, Failed> {
        let started = Instant::now();
        if run.cancel.is_cancelled() {
            return Ok(self.interrupted(started));
        }
        run.attempts.fetch_add(1, Ordering::Relaxed);
        let request = CompletionRequest {
            model: self.spec.clone(),
            messages: self.messages.clone(),
            options: self.options.clone(),
            format: self.output.as_ref().map(OutputSchema::format),
            tools: self.tools.clone(),
            tool_choice: self.tool_choice,
        };
        let failed = |error| Failed {
            error,
            streamed: false,
            attempts: 1,
        };
        let streaming = run
            .registry
            .stream_for(&run.caller, request, run.cancel.child_token())
            .await;
        let (route, mut stream) = match streaming {
            Ok(ok) => ok,
            Err(ProviderError::Cancelled) => return Ok(self.interrupted(started)),
            Err(e) => return Err(failed(e)),
        };
        if let Some(notice) = &route.notice {
            run.emitter.emit(ExecEvent::Output {
                phase: self.id.clone(),
                stream: "stderr".into(),
                text: format!("{notice}\n"),
            });
        }
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        let mut stats = None;
        loop {
            let event = tokio::select! {
                biased;
                event = stream.next() => event,
                // A provider that does not stop promptly is not waited for.
                _ = run.cancel.cancelled() => break,
            };
            match event {
                Some(Ok(StreamEvent::Text(piece))) => {
                    if self.streams() {
                        run.emitter.emit(ExecEvent::Text {
                            phase: self.id.clone(),
                            text: piece.clone(),
                        });
                    }
                    text.push_str(&piece);
                }
                Some(Ok(StreamEvent::ToolCall(call))) => tool_calls.push(call),
                Some(Ok(StreamEvent::Done(s))) => {
                    stats = Some(s);
                    break;
                }
                Some(Err(ProviderError::Cancelled)) => break,
                Some(Err(error)) => {
                    return Err(Failed {
                        streamed: self.streams() && !text.is_empty(),
                        ..failed(error)
                    })
                }
                None => {
                    let error = ProviderError::Other(format!(
                        "{} ended the answer without finishing it",
                        route.spec()
                    ));
                    return Err(Failed {
                        streamed: self.streams() && !text.is_empty(),
                        ..failed(error)
                    });
                }
            }
        }
        if let Some(s) = &stats {
            run.metrics.record_generation(run.skill, s);
        }
        let mut result = self.result(text, route.spec(), route.profile, started, stats);
        // An interrupted answer stays interrupted: its calls are not made.
        if !tool_calls.is_empty() && !result.interrupted() {
            result.finish_reason = "tool_calls".into();
            result.tool_calls = tool_calls;
        }
        Ok(result)
    }
}
