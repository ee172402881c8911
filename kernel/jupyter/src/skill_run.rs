//! Running a skill inside a request: `%%run`, `%skill run` and
//! `skill_request` with `action: run`.
//!
//! The executor's events become IOPub output with the request as parent:
//!
//! * the answer (a prompt, conversation or agent skill's, or a workflow's
//!   output phase) streams as a Markdown display updated in place, like a
//!   prompt cell's ([`LiveDisplay`], display id `skill-<msg_id>`);
//! * a typed answer (the skill has an output schema) is shown once, when
//!   it validated, as `application/json` with a pretty-printed text form;
//! * a workflow's progress is a second display (`skill-progress-<msg_id>`)
//!   updated as each phase starts, retries and finishes, with its time
//!   and model.
//!
//! The run holds the registry's execution guard (the skill is Executing)
//! and the cell's cancellation token: an interrupt stops it and keeps the
//! partial answer.

use std::sync::Arc;

use serde_json::Value;
use skillkernel_protocol::content::{DisplayData, MimeBundle, PhaseReport, RunReport, StreamName};
use skillkernel_providers::{GenerationOptions, ModelsConfig, Registry};
use tokio::sync::mpsc;

use crate::errors::KernelError;
use crate::exec_context::live_display::LiveDisplay;
use crate::exec_context::output::Output;
use crate::json_answer;
use crate::session::Shared;
use crate::tool_steps::ToolSteps;
use skillkernel_skills::exec::{Args, ExecEvent, RunContext, RunOutput, RunRequest};
use skillkernel_skills::SkillKind;
use tokio_util::sync::CancellationToken;

/// What to run.
pub struct SkillCall {
    /// `name`, `name@version-range`.
    pub spec: String,
    pub args: Args,
    pub input: String,
}

/// Runs `call`, publishing its progress and answer through `out`.
pub async fn run(
    shared: &Arc<Shared>,
    out: &mut Output<'_>,
    msg_id: &str,
    cancel: &CancellationToken,
    call: SkillCall,
) -> Result<RunOutput, KernelError> {
    let skills = shared.skills().ok_or(KernelError::NoSkills)?;
    let guard = skills.begin_execution(&call.spec).await?;
    let skill = Arc::clone(guard.skill());
    let name = skill.meta.name.clone();
    let runs_program = matches!(skill.kind(), SkillKind::Command | SkillKind::Session);
    let ctx = run_context(shared, runs_program)?;
    let (tool_guards, tool_skills) = skills.tool_skills(&skill).await?;
    let request = RunRequest {
        skill: Arc::clone(&skill),
        input: call.input,
        args: call.args,
        history: skills.conversation(&name),
        workdir: skills.working_dir.clone(),
        cancel: cancel.child_token(),
        tool_skills,
        depth: 0,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executor = Arc::clone(&skills.executor);
    let running = executor.run(&ctx, request, move |event| {
        let _ = tx.send(event);
    });
    tokio::pin!(running);
    let mut live = LiveDisplay::new(format!("skill-{msg_id}"));
    let mut progress = (skill.kind() == SkillKind::Workflow)
        .then(|| Progress::new(format!("skill-progress-{msg_id}"), &skill.id()));
    let steps = ToolSteps::new(msg_id);
    let result = loop {
        tokio::select! {
            result = &mut running => break result,
            Some(event) = rx.recv() => on_event(out, &mut live, progress.as_mut(), &steps, event).await,
        }
    };
    while let Ok(event) = rx.try_recv() {
        on_event(out, &mut live, progress.as_mut(), &steps, event).await;
    }
    drop(tool_guards);
    drop(guard);
    let output = result?;
    if let Some(json) = &output.json {
        // A typed answer is never streamed: it is shown once it validated.
        out.display(json_answer::display(json)).await;
    } else if !runs_program && live.text().is_empty() && !output.text.is_empty() {
        // Nothing streamed (an answer from the cache arrives whole).
        live.push(out, &output.text).await;
    }
    live.finish(out).await;
    let first = skills.extend_conversation(&name, &output.new_turns);
    shared.record_skill_turns(&name, first, &output.new_turns);
    out.set_metadata(
        "skill",
        serde_json::to_value(run_report(&output)).unwrap_or_default(),
    );
    if output.interrupted {
        return Err(KernelError::Interrupted);
    }
    Ok(output)
}

/// The context a run of a skill gets in this kernel: the models, the
/// session's model and options, the sandbox, the MCP tools. A skill that
/// only runs a program needs no model.
pub(crate) fn run_context(
    shared: &Arc<Shared>,
    runs_program: bool,
) -> Result<RunContext, KernelError> {
    Ok(match shared.models() {
        Some(models) => RunContext {
            registry: Arc::clone(&models.registry),
            default_model: shared.current_model().unwrap_or_default(),
            options: models.options.clone(),
            sandbox: shared.sandbox(),
            session: shared.usage_caller(None).session,
            external: shared.external_tools(),
        },
        // Programs need no model.
        None if runs_program => RunContext {
            registry: Arc::new(Registry::new(Vec::new(), ModelsConfig::default())),
            default_model: String::new(),
            options: GenerationOptions::default(),
            sandbox: shared.sandbox(),
            session: shared.usage_caller(None).session,
            external: shared.external_tools(),
        },
        None => return Err(KernelError::NoModel),
    })
}

/// The run's figures, for the reply's `metadata.skill` and `skill_reply`.
pub fn run_report(output: &RunOutput) -> RunReport {
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e3).round();
    RunReport {
        skill: output.skill.clone(),
        phases: output
            .phases
            .iter()
            .map(|p| PhaseReport {
                id: p.id.clone(),
                name: p.name.clone(),
                model: p.model.clone(),
                profile: p.profile.clone(),
                elapsed_ms: ms(p.elapsed),
                prompt_tokens: p.prompt_tokens,
                completion_tokens: p.completion_tokens,
                cached: p.cached,
                attempts: p.attempts,
                finish_reason: p.finish_reason.clone(),
            })
            .collect(),
        elapsed_ms: ms(output.totals.elapsed),
        prompt_tokens: output.totals.prompt_tokens,
        completion_tokens: output.totals.completion_tokens,
        cached_calls: output.totals.cached_calls,
        retries: output.totals.retries,
        attempts: output.attempts,
        interrupted: output.interrupted,
    }
}

async fn on_event(
    out: &mut Output<'_>,
    live: &mut LiveDisplay,
    progress: Option<&mut Progress>,
    steps: &ToolSteps,
    event: ExecEvent,
) {
    match &event {
        ExecEvent::Text { text, .. } => return live.push(out, text).await,
        ExecEvent::ToolCalled {
            step,
            call_id,
            tool,
            arguments,
        } => return steps.called(out, *step, call_id, tool, arguments).await,
        ExecEvent::ToolFinished(step) => return steps.finished(out, step).await,
        ExecEvent::Output { stream, text, .. } => {
            let name = if stream == "stderr" {
                StreamName::Stderr
            } else {
                StreamName::Stdout
            };
            return out.stream(name, text).await;
        }
        _ => {}
    }
    if let Some(progress) = progress {
        if progress.apply(&event) {
            progress.publish(out).await;
        }
    }
}

/// A workflow's phases as a list updated in place.
struct Progress {
    display_id: String,
    title: String,
    /// (phase id, line shown), in the order phases started.
    lines: Vec<(String, String)>,
    shown: bool,
}

impl Progress {
    fn new(display_id: String, skill: &str) -> Self {
        Progress {
            display_id,
            title: format!("{skill}:"),
            lines: Vec::new(),
            shown: false,
        }
    }

    fn set(&mut self, id: &str, line: String) {
        match self.lines.iter_mut().find(|(i, _)| i == id) {
            Some(entry) => entry.1 = line,
            None => self.lines.push((id.to_owned(), line)),
        }
    }

    /// Records `event`; whether the display changed.
    fn apply(&mut self, event: &ExecEvent) -> bool {
        match event {
            ExecEvent::PhaseStarted { id, name, model } => {
                let model = if model.is_empty() {
                    "session model"
                } else {
                    model
                };
                self.set(id, format!("▶ {name} — running on {model}"));
            }
            ExecEvent::PhaseFinished(p) => {
                let mark = if p.interrupted() { "■" } else { "✓" };
                let cached = if p.cached { ", cached" } else { "" };
                self.set(
                    &p.id,
                    format!(
                        "{mark} {} — {:.1} s, {}, {} tokens{cached}",
                        p.name,
                        p.elapsed.as_secs_f64(),
                        p.model,
                        p.completion_tokens
                    ),
                );
            }
            ExecEvent::Retry {
                phase,
                attempt,
                delay,
                reason,
            } => {
                self.set(
                    phase,
                    format!(
                        "↻ {phase} — attempt {attempt} failed ({reason}); retrying in {} ms",
                        delay.as_millis()
                    ),
                );
            }
            ExecEvent::Text { .. }
            | ExecEvent::Output { .. }
            | ExecEvent::ToolCalled { .. }
            | ExecEvent::ToolFinished(_) => return false,
        }
        true
    }

    async fn publish(&mut self, out: &mut Output<'_>) {
        let mut text = self.title.clone();
        for (_, line) in &self.lines {
            text.push_str("\n  ");
            text.push_str(line);
        }
        let mut data = MimeBundle::new();
        data.insert("text/plain".into(), Value::String(text));
        let display = DisplayData::new(data).with_display_id(&self.display_id);
        if self.shown {
            out.update_display(display).await;
        } else {
            out.display(display).await;
            self.shown = true;
        }
    }
}
