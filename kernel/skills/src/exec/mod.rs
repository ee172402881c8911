//! Running skills: the executor the kernel calls for `%%run`,
//! `%skill run` and `skill_request`.
//!
//! [`Executor::run`] takes a loaded [`Skill`], its input and arguments, and:
//!
//! 1. validates the arguments ([`params`]) and, for a conversation skill,
//!    gathers its context files ([`context`]) — before any model call;
//! 2. asks the skill's circuit breaker ([`BreakerState`]);
//! 3. makes its model calls through the providers' `Registry` (routing,
//!    profiles and the response cache apply): one call for prompt,
//!    conversation and agent skills, the phase DAG for workflows —
//!    each call retried with backoff on transient failures, the whole run
//!    under the skill's timeout;
//! 4. reports progress as [`ExecEvent`]s and returns a [`RunOutput`];
//! 5. records [`SkillMetrics`].
//!
//! Errors are [`SkillError`]s. Which layer produces each code:
//!
//! | code | where |
//! |---|---|
//! | `VALIDATION_ERROR` | here: arguments, context-file limits |
//! | `SKILL_EXECUTION_ERROR` | here: provider failures, template runtime errors, a command that failed on its own |
//! | `SKILL_TIMEOUT` | here: the run outlived `resilience.timeout`; the sandbox: a command's `timeout` or CPU limit |
//! | `CIRCUIT_BREAKER_OPEN` | here: the skill's breaker refused |
//! | `PROVIDER_UNAVAILABLE` | here: the backend could not be reached (after retries) |
//! | `SKILL_NOT_FOUND` | the registry: resolving the name the user typed |
//! | `DEPENDENCY_ERROR` | the registry: resolving the skill's dependencies before it is handed here |
//! | `SECURITY_VIOLATION` | the sandbox (command/session skills) |
//! | `TRUST_REQUIRED` | the registry: a skill that asks for more than the default, not trusted (`crate::trust`) |
//!
//! The executor never looks a skill up, never reads a skill file and never
//! knows Jupyter; it gets a `Skill` and hands back values.

mod agent;
mod breaker;
mod call;
pub mod context;
mod events;
pub mod params;
mod phase_value;
mod program;
mod prompt;
mod render;
mod resilience;
mod saved;
mod structured;
mod tool_calls;
mod workflow;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use skillkernel_providers::usage::Caller;
use skillkernel_providers::{ChatMessage, GenerationOptions, Registry};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use breaker::{BreakerState, CircuitState, SavedBreaker};
pub use context::ContextFile;
pub use events::{ExecEvent, PhaseResult, RunOutput, ToolStep, Totals};
pub use params::Args;
pub use render::render_prompt;
pub use saved::{SavedSkill, SkillStateSink};

use self::breaker::{Breakers, Outcome};
use self::call::{Call, Run};
use self::events::{Answer, Emitter};
use self::prompt::Values;
use self::resilience::timeout_error;
use super::metrics::SkillMetrics;
use super::model::{CommandSkill, SessionSkill, SkillBody, WorkflowSkill};
use super::{Skill, SkillError};
use skillkernel_sandbox::Sandbox;

/// One execution of a skill.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub skill: Arc<Skill>,
    /// `{{input}}`: a `%%run` cell's body, the request's `input`.
    pub input: String,
    pub args: Args,
    /// For conversation skills: the turns so far (see
    /// [`RunOutput::new_turns`]). Ignored by the other kinds.
    pub history: Vec<ChatMessage>,
    /// Where a conversation skill's context globs are rooted.
    pub workdir: PathBuf,
    /// Tripped by an interrupt: the run stops and keeps its partial output.
    pub cancel: CancellationToken,
    /// The skills the skill's `tools` name, resolved by the caller (the
    /// executor never looks a skill up).
    pub tool_skills: Vec<Arc<Skill>>,
    /// How many tool loops this run is nested in (a skill called as a
    /// tool runs at depth 1).
    pub depth: u32,
}

impl RunRequest {
    /// A run of `skill` on `input` with no arguments or history, rooted in
    /// the current directory.
    pub fn new(skill: Arc<Skill>, input: impl Into<String>) -> Self {
        RunRequest {
            skill,
            input: input.into(),
            args: Args::default(),
            history: Vec::new(),
            workdir: PathBuf::from("."),
            cancel: CancellationToken::new(),
            tool_skills: Vec::new(),
            depth: 0,
        }
    }
}

/// What the kernel runs skills with.
#[derive(Clone)]
pub struct RunContext {
    pub registry: Arc<Registry>,
    /// The session's current model specifier, for calls the skill does not
    /// route itself.
    pub default_model: String,
    /// The kernel's generation defaults, under the skill's overrides.
    pub options: GenerationOptions,
    /// Where command and session skills run; `None` refuses them.
    pub sandbox: Option<Arc<Sandbox>>,
    /// The kernel session the usage ledger records the run's model calls
    /// under.
    pub session: String,
    /// The MCP servers' tools skills may call; `None`: none configured.
    pub external: Option<Arc<dyn crate::external::ExternalTools>>,
}

/// Runs skills; one per kernel, shared by every session's runs.
pub struct Executor {
    metrics: Arc<SkillMetrics>,
    breakers: Breakers,
    /// Where a skill's metrics and breaker go when a run ends.
    sink: std::sync::OnceLock<Arc<dyn SkillStateSink>>,
}

/// The model calls a run will make, prepared before the first.
enum Plan<'a> {
    One(Box<Call>),
    /// A skill with tools: its first call starts a tool loop.
    Agent(Box<Call>),
    Workflow(&'a WorkflowSkill),
    Command(&'a CommandSkill, &'a Sandbox),
    Session(&'a SessionSkill, &'a Sandbox),
}

impl Executor {
    pub fn new(metrics: Arc<SkillMetrics>) -> Self {
        Executor {
            metrics,
            breakers: Breakers::default(),
            sink: std::sync::OnceLock::new(),
        }
    }

    pub fn metrics(&self) -> &Arc<SkillMetrics> {
        &self.metrics
    }

    /// The circuit breaker of the skill called `skill` (every version).
    pub fn breaker(&self, skill: &str) -> BreakerState {
        self.breakers.state(skill)
    }

    /// The skills whose circuit breaker is open now, by name.
    pub fn open_breakers(&self) -> Vec<String> {
        self.breakers.open()
    }

    /// Closes the circuit breaker of `skill` (`%skill reset`); its metrics
    /// are reset separately with [`SkillMetrics::reset`].
    pub fn reset(&self, skill: &str) {
        self.breakers.reset(skill);
    }

    /// Runs `req`, calling `events` as it goes. Cancellation is not an
    /// error: the output comes back with `interrupted` set.
    pub async fn run(
        &self,
        ctx: &RunContext,
        req: RunRequest,
        mut events: impl FnMut(ExecEvent) + Send,
    ) -> Result<RunOutput, SkillError> {
        let started = Instant::now();
        let skill = Arc::clone(&req.skill);
        let span = tracing::info_span!(
            "skill_run",
            skill = %skill.meta.name,
            kind = skill.kind().as_str(),
            attempts = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let result = self
            .execute(ctx, &req, &mut events)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(output) => {
                span.record("attempts", i64::from(output.attempts));
            }
            Err(e) => skillkernel_stdx::span::mark_failed(&span, e),
        }
        let code = result.as_ref().err().map(|e| e.code);
        self.metrics
            .record_execution(&skill.meta.name, started.elapsed(), code);
        self.save(&skill.meta.name);
        result.map_err(|e| match e.skill {
            Some(_) => e,
            None => e.for_skill(skill.id()),
        })
    }

    /// [`Executor::run`] as a boxed future with no events: how a run
    /// nested in a run (a skill called as a tool) is made, so that the
    /// future of a run does not contain itself.
    pub(crate) fn run_nested<'a>(
        &'a self,
        ctx: &'a RunContext,
        req: RunRequest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<RunOutput, SkillError>> + Send + 'a>,
    > {
        Box::pin(self.run(ctx, req, |_| {}))
    }

    async fn execute(
        &self,
        ctx: &RunContext,
        req: &RunRequest,
        events: &mut (dyn FnMut(ExecEvent) + Send),
    ) -> Result<RunOutput, SkillError> {
        let started = Instant::now();
        let skill = &*req.skill;
        let params = params::validate(skill, &req.args)?;
        let values = Values {
            input: &req.input,
            params: &params,
        };
        let plan = plan(ctx, skill, &values, req).await?;
        let permit = self.breakers.admit(&skill.meta.name, &skill.resilience)?;
        let run = Run {
            registry: &ctx.registry,
            cancel: req.cancel.child_token(),
            emitter: Emitter::new(events),
            metrics: &self.metrics,
            skill: &skill.meta.name,
            caller: Caller::skill(ctx.session.clone(), skill.meta.name.clone()),
            resilience: &skill.resilience,
            attempts: AtomicU32::new(0),
        };
        let calls = async {
            match plan {
                Plan::One(call) => single(&run, *call).await,
                Plan::Agent(call) => agent::run(self, ctx, req, &run, *call).await,
                Plan::Workflow(w) => {
                    workflow::run(&run, skill, w, &values, &ctx.default_model, &ctx.options).await
                }
                Plan::Command(c, sandbox) => {
                    program::command(&run, sandbox, skill, c, &values).await
                }
                Plan::Session(s, sandbox) => {
                    program::session(&run, sandbox, skill, s, &req.input).await
                }
            }
        };
        // A program's own deadlines (see `program.rs`) end inside the run's
        // timeout, so its group is killed and the timeout audited there;
        // this outer one is the backstop.
        let outer = match skill.body {
            SkillBody::Command(_) | SkillBody::Session(_) => {
                skill.resilience.timeout + program::BACKSTOP_MARGIN
            }
            _ => skill.resilience.timeout,
        };
        let answer = tokio::time::timeout(outer, calls).await;
        run.cancel.cancel();
        let attempts = run.attempts.load(Ordering::Relaxed);
        let answer = answer.unwrap_or_else(|_| Err(timeout_error(&skill.resilience, attempts)));
        permit.finish(match &answer {
            Ok(a) if a.interrupted => Outcome::Neutral,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        });
        let answer = answer?;
        let new_turns = match (&skill.body, answer.text.is_empty()) {
            (SkillBody::Conversation(_), false) => vec![
                prompt::message("user", req.input.clone()),
                prompt::message("assistant", answer.text.clone()),
            ],
            _ => Vec::new(),
        };
        Ok(RunOutput {
            skill: skill.id(),
            totals: Totals::of(&answer.phases, started.elapsed()),
            text: answer.text,
            json: answer.json,
            tool_steps: answer.tool_steps,
            phases: answer.phases,
            attempts,
            interrupted: answer.interrupted,
            new_turns,
        })
    }
}

/// Renders the single call of a prompt, conversation or agent skill
/// (gathering context files first), or picks the workflow.
async fn plan<'a>(
    ctx: &'a RunContext,
    skill: &'a Skill,
    values: &Values<'_>,
    req: &RunRequest,
) -> Result<Plan<'a>, SkillError> {
    let mut messages = match &skill.body {
        SkillBody::Workflow(w) => return Ok(Plan::Workflow(w)),
        SkillBody::Prompt(p) => prompt::prompt_messages(p, values)?,
        SkillBody::Conversation(c) => {
            let files = context::gather_off_thread(c, &req.workdir).await?;
            prompt::conversation_messages(c, values, &files, &req.history)?
        }
        SkillBody::Agent(a) => {
            prompt::agent_messages(a, skill.source.dir().as_deref(), values.input)
        }
        SkillBody::Command(c) => {
            let sandbox = program::require(ctx.sandbox.as_deref(), skill)?;
            return Ok(Plan::Command(c, sandbox));
        }
        SkillBody::Session(s) => {
            let sandbox = program::require(ctx.sandbox.as_deref(), skill)?;
            return Ok(Plan::Session(s, sandbox));
        }
    };
    let (spec, options) = workflow::settings(skill, None, &ctx.default_model, &ctx.options);
    let kind = skill.kind().as_str();
    if let Some(schema) = &skill.output {
        structured::instruct(&mut messages, schema);
    }
    let call = Box::new(Call {
        id: kind.to_owned(),
        name: skill.meta.name.clone(),
        spec,
        messages,
        options,
        streams_answer: true,
        output: skill.output.clone(),
        tools: Vec::new(),
        tool_choice: Default::default(),
    });
    Ok(if skill.tools.is_empty() {
        Plan::One(call)
    } else {
        Plan::Agent(call)
    })
}

/// The one call of a prompt, conversation or agent skill.
async fn single(run: &Run<'_>, call: Call) -> Result<Answer, SkillError> {
    run.emitter.emit(ExecEvent::PhaseStarted {
        id: call.id.clone(),
        name: call.name.clone(),
        model: call.spec.clone(),
    });
    let result = structured::answer(run, &call, false)
        .instrument(workflow::phase_span(&call))
        .await?;
    run.emitter.emit(ExecEvent::PhaseFinished(result.clone()));
    Ok(Answer {
        tool_steps: Vec::new(),
        text: result.text.clone(),
        json: result.json.clone(),
        interrupted: result.interrupted(),
        phases: vec![result],
    })
}
