//! `skill test`: a skill's own tests — input, parameters, expectations —
//! run against a chosen model, or recorded and replayed so they are
//! deterministic in CI.
//!
//! * `spec` — the tests as written (`tests` in a native manifest, or
//!   `tests.yaml` beside a folder skill's manifest).
//! * `expect` — contains, not_contains, regex, equals, JSON Schema.
//! * `replay` — the `test` model backend that records calls to the real
//!   registry or answers them from the recordings beside the skill.
//!
//! [`run_tests`] runs each test through the same executor a cell uses
//! (its caller has already passed the registry's trust check by starting
//! an execution). With a chosen model, in record and in replay mode, the
//! skill's own routing (and its phases' and tool skills') is set aside:
//! every call goes to the chosen model, or to the recordings.
//!
//! Nothing here knows Jupyter; the kernel shows the outcomes.

pub mod expect;
pub mod replay;
mod spec;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use skillkernel_providers::usage::Caller;
use skillkernel_providers::{ModelsConfig, Registry};
use tokio_util::sync::CancellationToken;

pub use expect::Expect;
pub use replay::{Recording, TestModels, RECORDING_FILE};
pub use spec::{load_tests, SkillTest, TESTS_FILE};

use crate::exec::{Args, Executor, RunContext, RunRequest};
use crate::model::{Routing, Skill, SkillBody};
use crate::{ErrorCode, SkillError};

/// How the tests' model calls are answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestMode {
    /// By the model (the chosen one, else the skill's own routing).
    #[default]
    Live,
    /// By the model, and kept beside the skill.
    Record,
    /// From what was kept: no model.
    Replay,
}

/// How one test went.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    /// What did not hold (or why the run failed).
    pub failures: Vec<String>,
    pub answer: String,
    pub elapsed: Duration,
}

/// What a test run needs.
pub struct TestSetup<'a> {
    pub executor: &'a Executor,
    /// The context a cell's run would get.
    pub ctx: RunContext,
    pub skill: Arc<Skill>,
    pub tool_skills: Vec<Arc<Skill>>,
    pub mode: TestMode,
    /// The model to run against (live, record); `None`: live keeps the
    /// skill's routing, record uses the session's model.
    pub model: Option<String>,
    pub workdir: PathBuf,
    pub cancel: CancellationToken,
}

/// Runs `tests`; in record mode writes the recordings beside the skill.
pub async fn run_tests(setup: TestSetup<'_>, tests: &[SkillTest]) -> Result<TestRun, SkillError> {
    let TestSetup {
        executor,
        mut ctx,
        skill,
        tool_skills,
        mode,
        model,
        workdir,
        cancel,
    } = setup;
    let id = skill.id();
    let recordings = skill.source.path.as_deref().and_then(Recording::path_for);
    let mut models = None;
    let (skill, tool_skills) = match (mode, &model) {
        (TestMode::Live, None) => (skill, tool_skills),
        _ => (
            Arc::new(unrouted(&skill)),
            tool_skills.iter().map(|s| Arc::new(unrouted(s))).collect(),
        ),
    };
    match mode {
        TestMode::Live => {
            if let Some(m) = &model {
                ctx.default_model = m.clone();
            }
        }
        TestMode::Record => {
            let chosen = model.unwrap_or_else(|| ctx.default_model.clone());
            let caller = Caller::skill(ctx.session.clone(), skill.meta.name.clone());
            let recorder = TestModels::recording(Arc::clone(&ctx.registry), caller);
            ctx.registry = Arc::new(Registry::new(
                vec![recorder.clone()],
                ModelsConfig::default(),
            ));
            ctx.default_model = format!("{chosen}@{}", replay::BACKEND);
            models = Some(recorder);
        }
        TestMode::Replay => {
            let path = recordings.clone().ok_or_else(|| no_file(&id))?;
            let recording = tokio::task::spawn_blocking(move || Recording::read(&path))
                .await
                .map_err(|e| test_error(&id, e.to_string()))?
                .map_err(|e| test_error(&id, e))?;
            if recording.skill.split('@').next() != Some(skill.meta.name.as_str()) {
                return Err(test_error(
                    &id,
                    format!(
                        "the recordings beside `{id}` are of `{}`; run the tests with --record again",
                        recording.skill
                    ),
                ));
            }
            let replayer = TestModels::replaying(recording);
            ctx.registry = Arc::new(Registry::new(
                vec![replayer.clone()],
                ModelsConfig::default(),
            ));
            ctx.default_model = format!("recorded@{}", replay::BACKEND);
            models = Some(replayer);
        }
    }
    let mut outcomes = Vec::new();
    // Whether every test ran to an answer: only then are recordings kept
    // (a partial recording would replace a good one).
    let mut complete = true;
    for test in tests {
        if cancel.is_cancelled() {
            complete = false;
            break;
        }
        if let Some(m) = &models {
            m.set_test(&test.name);
        }
        let request = RunRequest {
            skill: Arc::clone(&skill),
            input: test.input.clone(),
            args: Args::Json(test.args.clone()),
            history: Vec::new(),
            workdir: workdir.clone(),
            cancel: cancel.child_token(),
            tool_skills: tool_skills.clone(),
            depth: 0,
        };
        let started = Instant::now();
        let (answer, failures) = match executor.run(&ctx, request, |_| {}).await {
            Ok(out) if out.interrupted => {
                complete = false;
                (out.text, vec!["interrupted".to_owned()])
            }
            Ok(out) => {
                let failures = test.expect.check(&out.text, out.json.as_ref());
                (out.text, failures)
            }
            Err(e) => {
                complete = false;
                (String::new(), vec![format!("the run failed: {e}")])
            }
        };
        outcomes.push(TestOutcome {
            name: test.name.clone(),
            passed: failures.is_empty(),
            failures,
            answer,
            elapsed: started.elapsed(),
        });
    }
    let mut recorded = None;
    if let (TestMode::Record, Some(m), true) = (mode, &models, complete) {
        let path = recordings.clone().ok_or_else(|| no_file(&id))?;
        let recording = Recording {
            version: 1,
            skill: id.clone(),
            calls: m.recorded(),
        };
        let target = path.clone();
        tokio::task::spawn_blocking(move || recording.write(&target))
            .await
            .map_err(|e| test_error(&id, e.to_string()))?
            .map_err(|e| test_error(&id, e))?;
        recorded = Some(path);
    }
    Ok(TestRun { outcomes, recorded })
}

/// What a test run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRun {
    pub outcomes: Vec<TestOutcome>,
    /// Where the recordings were written (record mode, every test ran to
    /// an answer); `None` otherwise — a partial recording is not kept.
    pub recorded: Option<PathBuf>,
}

/// `skill` with every model call sent to the run's default model.
fn unrouted(skill: &Skill) -> Skill {
    let mut s = skill.clone();
    s.routing = Routing::default();
    if let SkillBody::Workflow(w) = &mut s.body {
        for phase in &mut w.phases {
            phase.routing = Routing::default();
        }
    }
    s
}

fn test_error(id: &str, message: String) -> SkillError {
    SkillError::new(
        ErrorCode::ValidationError,
        message,
        "see \"Testing skills\" in docs/skills.md",
    )
    .for_skill(id)
}

fn no_file(id: &str) -> SkillError {
    test_error(
        id,
        format!("`{id}` has no folder of its own to keep recordings in (a cell's, a built-in or a loose workflow)"),
    )
}
