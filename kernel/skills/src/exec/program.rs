//! Command and session skills: programs run in the sandbox
//! ([`skillkernel_sandbox`]) instead of model calls.
//!
//! * **command** — `command` with `args` (each a template: `{{input}}` and
//!   the parameters), the input on stdin, under the policy the manifest's
//!   `permissions`, `resource_limits` and `sandbox` give, in the kernel's
//!   working directory (the skill's own folder readable too). It is tried
//!   again `retries` times (manifest, default 0) when it fails on its own
//!   or times out — never after the sandbox stopped it — then `fallback`
//!   runs if there is one. `timeout` (seconds) bounds each attempt.
//! * **session** — the input goes to the skill's long-lived process
//!   ([`skillkernel_sandbox::sessions`]); `timeout` bounds one exchange.
//!
//! stdout and stderr stream as [`ExecEvent::Output`]; stdout is the answer.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::call::Run;
use super::events::{Answer, ExecEvent, PhaseResult};
use super::prompt::Values;
use super::resilience::backoff;
use crate::model::{CommandSkill, SessionSkill};
use crate::template::Template;
use crate::verdict_error::{verdict_error, Grantor};
use crate::{ErrorCode, Skill, SkillError};
use skillkernel_sandbox::audit::Subject;
use skillkernel_sandbox::run::{OutputSink, Stream};
use skillkernel_sandbox::sessions::SessionSpec;
use skillkernel_sandbox::verdict::{self, Verdict};
use skillkernel_sandbox::{Sandbox, SandboxPolicy, EXIT_NOT_FOUND};

/// How much longer than the skill's timeout the executor's own timeout
/// waits, so that a program's deadline (inside it) always fires first.
pub(super) const BACKSTOP_MARGIN: Duration = Duration::from_secs(2);

/// Streams output as events and keeps stdout (the answer) and stderr.
struct EventSink<'r, 'a> {
    run: &'r Run<'a>,
    phase: &'r str,
    stdout: String,
    stderr: String,
}

impl<'r, 'a> EventSink<'r, 'a> {
    fn new(run: &'r Run<'a>, phase: &'r str) -> Self {
        EventSink {
            run,
            phase,
            stdout: String::new(),
            stderr: String::new(),
        }
    }
}

/// The program could not be started or reached at all.
fn unreachable_program(error: impl std::fmt::Display, hint: &str) -> SkillError {
    SkillError::new(ErrorCode::SkillExecutionError, error.to_string(), hint)
}

impl OutputSink for EventSink<'_, '_> {
    async fn output(&mut self, stream: Stream, text: &str) {
        let name = match stream {
            Stream::Stdout => {
                self.stdout.push_str(text);
                "stdout"
            }
            Stream::Stderr => {
                self.stderr.push_str(text);
                "stderr"
            }
        };
        self.run.emitter.emit(ExecEvent::Output {
            phase: self.phase.to_owned(),
            stream: name.to_owned(),
            text: text.to_owned(),
        });
    }

    async fn flush(&mut self) {}
}

/// The sandbox the kernel has, or why there is none.
pub(super) fn require<'s>(
    sandbox: Option<&'s Sandbox>,
    skill: &Skill,
) -> Result<&'s Sandbox, SkillError> {
    sandbox.ok_or_else(|| {
        SkillError::new(
            ErrorCode::SkillExecutionError,
            format!(
                "`{}` is a {} skill, and this kernel has no sandbox to run it in",
                skill.meta.name,
                skill.kind()
            ),
            "run the kernel through `skillkernel start`, which provides the sandbox helper",
        )
    })
}

/// The policy of `skill` (its manifest over the defaults, its folder
/// readable) under the kernel's `[sandbox]` settings.
pub(super) fn policy_of(
    sandbox: &Sandbox,
    skill: &Skill,
    manifest: &serde_json::Map<String, Value>,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<SandboxPolicy, SkillError> {
    let mut policy =
        SandboxPolicy::from_manifest(manifest, env, sandbox.working_dir()).map_err(|e| {
            SkillError::new(
                ErrorCode::ValidationError,
                e.to_string(),
                "fix the skill's manifest",
            )
        })?;
    if let Some(dir) = skill.source.dir() {
        policy.read.push(dir);
    }
    sandbox
        .enforce_config(&mut policy, Some(&skill.meta.name))
        .map_err(|e| {
            SkillError::new(
                ErrorCode::SecurityViolation,
                e.to_string(),
                "see `%sandbox status` for what stays shut",
            )
        })?;
    Ok(policy)
}

/// `timeout` from the manifest (seconds), else the skill's resilience
/// timeout.
fn timeout_of(skill: &Skill, manifest: &serde_json::Map<String, Value>) -> Duration {
    manifest
        .get("timeout")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .unwrap_or(skill.resilience.timeout)
}

fn argv_of(c: &CommandSkill, values: &Values<'_>) -> Result<Vec<String>, SkillError> {
    let mut argv = vec![c.command.clone()];
    for arg in &c.args {
        if !arg.contains("{{") && !arg.contains("{%") {
            argv.push(arg.clone());
            continue;
        }
        let template = Template::parse(arg).map_err(|e| {
            SkillError::new(
                ErrorCode::SkillExecutionError,
                format!("argument `{arg}`: {}", e.message),
                e.remedy,
            )
        })?;
        argv.push(values.render(&template, &Default::default(), "an argument")?);
    }
    Ok(argv)
}

/// Runs a command skill: attempts, then the fallback.
pub(super) async fn command(
    run: &Run<'_>,
    sandbox: &Sandbox,
    skill: &Skill,
    c: &CommandSkill,
    values: &Values<'_>,
) -> Result<Answer, SkillError> {
    let subject = Subject {
        own_dir: skill.source.dir(),
        ..Subject::skill("skill", &skill.meta.name, &skill.meta.version.to_string())
    };
    let retries = c.policy.get("retries").and_then(Value::as_u64).unwrap_or(0) as u32;
    let timeout = timeout_of(skill, &c.policy);
    let started = Instant::now();
    // Every attempt (and the fallback) ends by the skill's overall timeout.
    let deadline = started + skill.resilience.timeout;
    let mut attempt = 0;
    let mut program = c;
    let mut fallback_used = false;
    // Made once per program (the fallback differs only in its env), not
    // once per attempt.
    let mut policy = policy_of(sandbox, skill, &c.policy, &c.env)?;
    let mut argv = argv_of(program, values)?;
    loop {
        attempt += 1;
        run.attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sink = EventSink::new(run, "command");
        let left = deadline.saturating_duration_since(Instant::now());
        let verdict = sandbox
            .run(
                &subject,
                &policy,
                &argv,
                Some(values.input),
                &mut sink,
                timeout.min(left),
                &run.cancel,
            )
            .await
            .map_err(|e| unreachable_program(e, "see the daemon log"))?;
        let answer = |interrupted| {
            Ok(Answer {
                tool_steps: Vec::new(),
                text: sink.stdout.clone(),
                json: None,
                phases: vec![phase(&argv, started, attempt, interrupted)],
                interrupted,
            })
        };
        match &verdict {
            Verdict::Success => return answer(false),
            Verdict::Interrupted => return answer(true),
            _ => {}
        }
        let retriable = matches!(verdict, Verdict::Failed { .. } | Verdict::TimedOut { .. });
        if retriable && attempt <= retries {
            let delay = backoff(&skill.resilience, attempt);
            run.emitter.emit(ExecEvent::Retry {
                phase: "command".into(),
                attempt,
                delay,
                reason: verdict_message(&verdict, skill),
            });
            run.metrics.record_retry(run.skill);
            tokio::select! {
                _ = tokio::time::sleep(delay) => continue,
                _ = run.cancel.cancelled() => return answer(true),
            }
        }
        let not_found =
            matches!(&verdict, Verdict::SetupFailed(f) if f.exit_code == EXIT_NOT_FOUND);
        if (retriable || not_found) && !fallback_used {
            if let Some(fallback) = c.fallback.as_deref() {
                tracing::info!(skill = %skill.id(), "the command failed; running its fallback");
                program = fallback;
                fallback_used = true;
                policy = policy_of(sandbox, skill, &c.policy, &program.env)?;
                argv = argv_of(program, values)?;
                continue;
            }
        }
        let what = format!("`{}`", skill.id());
        return Err(verdict_error(&verdict, &what, Grantor::Skill)
            .unwrap_or_else(|| SkillError::new(ErrorCode::SkillExecutionError, "failed", "")));
    }
}

fn verdict_message(verdict: &Verdict, skill: &Skill) -> String {
    verdict_error(verdict, &format!("`{}`", skill.id()), Grantor::Skill)
        .map(|e| e.message)
        .unwrap_or_default()
}

fn phase(argv: &[String], started: Instant, attempts: u32, interrupted: bool) -> PhaseResult {
    PhaseResult {
        id: "command".into(),
        name: argv.first().cloned().unwrap_or_default(),
        text: String::new(),
        model: "sandbox".into(),
        profile: None,
        elapsed: started.elapsed(),
        prompt_tokens: 0,
        completion_tokens: 0,
        cached: false,
        attempts,
        finish_reason: if interrupted { "cancelled" } else { "stop" }.into(),
        tool_calls: Vec::new(),
        json: None,
    }
}

/// Runs one exchange with a session skill's process.
pub(super) async fn session(
    run: &Run<'_>,
    sandbox: &Sandbox,
    skill: &Skill,
    s: &SessionSkill,
    input: &str,
) -> Result<Answer, SkillError> {
    let version = skill.meta.version.to_string();
    let subject = Subject {
        own_dir: skill.source.dir(),
        ..Subject::skill("session", &skill.meta.name, &version)
    };
    let policy = policy_of(sandbox, skill, &s.policy, &s.env)?;
    let mut argv = vec![s.command.clone()];
    argv.extend(s.args.iter().cloned());
    let spec = SessionSpec {
        name: skill.meta.name.clone(),
        skill: skill.id(),
        argv: argv.clone(),
        policy,
        reply: s.reply.clone(),
    };
    let started = Instant::now();
    let mut sink = EventSink::new(run, "session");
    run.attempts
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    sandbox.audit_grants(&subject, &spec.policy);
    let timeout = timeout_of(skill, &s.policy).min(skill.resilience.timeout);
    let exchange = sandbox
        .exchange(&spec, input, &mut sink, timeout, &run.cancel)
        .await
        .map_err(|e| unreachable_program(e, "`%sandbox status` lists the sessions"))?;
    let what = format!("`{}`", skill.id());
    let denials = verdict::denials(&sink.stderr, &spec.policy);
    let verdict = match &exchange.ended {
        Some(finished) => {
            let (verdict, _) = verdict::judge(finished, &spec.policy);
            verdict
        }
        None if !denials.is_empty() => Verdict::Denied(denials.clone()),
        None => Verdict::Success,
    };
    let report = exchange.ended.as_ref().and_then(|f| match &f.setup {
        skillkernel_sandbox::launch::Setup::Applied(r) => Some((**r).clone()),
        _ => None,
    });
    sandbox.audit_run(&subject, &argv, &verdict, &denials, report.as_ref());
    let answer = Answer {
        tool_steps: Vec::new(),
        text: exchange.text.clone(),
        json: None,
        phases: vec![phase(&argv, started, 1, exchange.interrupted)],
        interrupted: exchange.interrupted,
    };
    match verdict {
        // A program that ended with success (`exit()`) is started afresh
        // by the next run.
        Verdict::Success | Verdict::Interrupted => Ok(answer),
        verdict => Err(verdict_error(&verdict, &what, Grantor::Skill)
            .unwrap_or_else(|| SkillError::new(ErrorCode::SkillExecutionError, "failed", ""))),
    }
}
