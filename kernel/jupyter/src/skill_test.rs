//! `test`: a skill's own tests, for `%skill test` and `skill_request`.
//! The run starts as any run does (the registry's trust check, the tool
//! skills held Executing); the engine's `testing` runs the tests.

use std::sync::Arc;

use skillkernel_protocol::content::{SkillTestReport, SkillTestResult, TestMode as WireMode};
use skillkernel_skills::exec::Executor;
use skillkernel_skills::metrics::SkillMetrics;
use skillkernel_skills::testing::{self, TestMode, TestSetup};
use skillkernel_skills::{SkillError, SkillKind};
use tokio_util::sync::CancellationToken;

use crate::errors::KernelError;
use crate::session::Shared;
use crate::skill_run::run_context;

pub async fn run(
    shared: &Arc<Shared>,
    spec: &str,
    mode: WireMode,
    model: Option<String>,
    cancel: &CancellationToken,
) -> Result<SkillTestReport, KernelError> {
    let skills = shared.skills().ok_or(KernelError::NoSkills)?;
    let guard = skills.begin_execution(spec).await?;
    let skill = Arc::clone(guard.skill());
    let runs_program = matches!(skill.kind(), SkillKind::Command | SkillKind::Session);
    let replaying = mode == WireMode::Replay;
    // Replayed tests need no model.
    let ctx = run_context(shared, runs_program || replaying)?;
    let loaded = Arc::clone(&skill);
    let tests = tokio::task::spawn_blocking(move || testing::load_tests(&loaded))
        .await
        .map_err(|e| {
            KernelError::from(SkillError::new(
                skillkernel_skills::ErrorCode::SkillExecutionError,
                format!("reading the tests failed: {e}"),
                "this is a bug; please report it with the log",
            ))
        })?
        .map_err(SkillError::from)?;
    let (tool_guards, tool_skills) = skills.tool_skills(&skill).await?;
    // An executor of the tests' own: their runs neither count in the
    // skill's metrics nor move its circuit breaker.
    let executor = Executor::new(Arc::new(SkillMetrics::new()));
    let run = testing::run_tests(
        TestSetup {
            executor: &executor,
            ctx,
            skill: Arc::clone(&skill),
            tool_skills,
            mode: match mode {
                WireMode::Live => TestMode::Live,
                WireMode::Record => TestMode::Record,
                WireMode::Replay => TestMode::Replay,
            },
            model: model.clone(),
            workdir: skills.working_dir.clone(),
            cancel: cancel.child_token(),
        },
        &tests,
    )
    .await?;
    drop(tool_guards);
    drop(guard);
    let outcomes = run.outcomes;
    let passed = outcomes.iter().filter(|o| o.passed).count();
    Ok(SkillTestReport {
        skill: skill.id(),
        mode,
        model,
        passed,
        failed: outcomes.len() - passed,
        recorded: run.recorded.map(|p| p.display().to_string()),
        tests: outcomes
            .into_iter()
            .map(|o| SkillTestResult {
                name: o.name,
                passed: o.passed,
                failures: o.failures,
                answer: o.answer,
                elapsed_ms: (o.elapsed.as_secs_f64() * 1e3).round(),
            })
            .collect(),
    })
}
