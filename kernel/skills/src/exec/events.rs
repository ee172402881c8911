//! What a running skill reports while it runs, and what it returns.
//!
//! The kernel turns [`ExecEvent`]s into IOPub output (workflow progress,
//! a streaming answer) and [`RunOutput`] into the cell's result or a
//! `skill_reply`. Nothing here knows Jupyter.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Serialize, Serializer};
use skillkernel_providers::ChatMessage;

/// Something that happened during a run, in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ExecEvent {
    /// A model call begins. `model` is the specifier asked for (a model,
    /// `name@backend` or a profile); the one chosen is in `PhaseFinished`.
    PhaseStarted {
        id: String,
        name: String,
        model: String,
    },
    /// A piece of the skill's answer: the output of a prompt, conversation
    /// or agent skill, or of a workflow's output phase.
    Text { phase: String, text: String },
    /// Output of a command or session skill's program, as it comes
    /// (`stream` is `stdout` or `stderr`; stdout is also the answer).
    Output {
        phase: String,
        stream: String,
        text: String,
    },
    /// A model call ended (also when interrupted: see `finish_reason`).
    PhaseFinished(PhaseResult),
    /// The model called a tool (step `step` of the loop, from 1).
    ToolCalled {
        step: u32,
        call_id: String,
        tool: String,
        arguments: serde_json::Value,
    },
    /// A tool call ended: `ok` false when it failed, timed out, was
    /// refused by the sandbox, or named no tool; `result` is what the
    /// model was given (cut at `tools::RESULT_BYTES`).
    ToolFinished(ToolStep),
    /// A call failed transiently and will be tried again after `delay`.
    Retry {
        phase: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        #[serde(rename = "delay_ms", serialize_with = "millis")]
        delay: Duration,
        reason: String,
    },
}

/// One model call of a run: a workflow phase, or the single call of the
/// other kinds (its id is the kind: `prompt`, `conversation`, `agent`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseResult {
    pub id: String,
    pub name: String,
    pub text: String,
    /// `name@backend` of the model that answered.
    pub model: String,
    /// The routing profile that chose it, if one did.
    pub profile: Option<String>,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The answer came from the response cache.
    pub cached: bool,
    /// Calls made, retries included.
    pub attempts: u32,
    /// `stop`, `length`, `cancelled` or `tool_calls`.
    pub finish_reason: String,
    /// The tools this call asked for (a step of a tool loop).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<skillkernel_providers::ToolCall>,
    /// The answer as JSON, when the call had an output schema (it
    /// validated: an answer that does not is an error, not a result).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
}

impl PhaseResult {
    pub fn interrupted(&self) -> bool {
        self.finish_reason == "cancelled"
    }
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutput {
    /// `name@version`.
    pub skill: String,
    /// The answer: the single call's text, or the workflow's output phase.
    pub text: String,
    /// The answer as JSON valid for the skill's output schema, when it
    /// has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Every call that finished, in the skill's phase order.
    pub phases: Vec<PhaseResult>,
    pub totals: Totals,
    /// Model calls made, retries included.
    pub attempts: u32,
    /// Interrupted by the caller; `text` is what was said until then.
    pub interrupted: bool,
    /// Every tool call of a tool loop, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_steps: Vec<ToolStep>,
    /// For a conversation skill: the user turn and the answer, to append to
    /// the history of the next run (also when interrupted, as prompt cells
    /// keep a cut-short answer). Empty for the other kinds.
    pub new_turns: Vec<ChatMessage>,
}

/// One tool call of a loop and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolStep {
    pub step: u32,
    pub call_id: String,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub ok: bool,
    pub result: String,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

/// What the calls of a run produced, before the totals are added.
pub(crate) struct Answer {
    pub text: String,
    pub json: Option<serde_json::Value>,
    pub tool_steps: Vec<ToolStep>,
    /// In the skill's phase order.
    pub phases: Vec<PhaseResult>,
    pub interrupted: bool,
}

/// Sums over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Calls answered from the response cache.
    pub cached_calls: u32,
    pub retries: u32,
}

impl Totals {
    pub(crate) fn of(phases: &[PhaseResult], elapsed: Duration) -> Totals {
        let mut t = Totals {
            elapsed,
            ..Totals::default()
        };
        for p in phases {
            t.prompt_tokens += p.prompt_tokens;
            t.completion_tokens += p.completion_tokens;
            t.cached_calls += u32::from(p.cached);
            t.retries += p.attempts.saturating_sub(1);
        }
        t
    }
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// Hands events to the caller's callback from concurrent phases. The lock
/// is held only for the callback, never across an await.
pub(crate) struct Emitter<'a> {
    sink: Mutex<&'a mut (dyn FnMut(ExecEvent) + Send)>,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(sink: &'a mut (dyn FnMut(ExecEvent) + Send)) -> Self {
        Emitter {
            sink: Mutex::new(sink),
        }
    }

    pub(crate) fn emit(&self, event: ExecEvent) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        (*sink)(event);
    }
}
