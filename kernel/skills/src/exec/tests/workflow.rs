//! Workflow skills: the phase DAG.

use std::sync::Arc;
use std::time::Duration;

use skillkernel_providers::scripted::{ScriptedCall, ScriptedProvider};
use tokio::time::Instant;

use super::{context, executor, phase, run, streamed, workflow_skill};
use crate::exec::{ExecEvent, RunRequest};
use crate::model::Phase;
use crate::ErrorCode;

/// Answers `<prompt>` after `delay`.
fn bracketing(delay: Duration) -> Arc<ScriptedProvider> {
    ScriptedProvider::builder("scripted")
        .models(&["m", "big"])
        .reply_with(|r| Ok(format!("<{}>", r.messages.last().unwrap().content)))
        .delay(delay)
        .build()
}

/// The call whose prompt starts with `id` (phase templates start with it).
fn call_of<'a>(calls: &'a [ScriptedCall], id: &str) -> &'a ScriptedCall {
    calls
        .iter()
        .find(|c| c.prompt().starts_with(id))
        .unwrap_or_else(|| panic!("no call for {id}"))
}

/// Every phase's call started after the calls of its dependencies ended.
fn assert_dependencies_first(phases: &[Phase], calls: &[ScriptedCall]) {
    for p in phases {
        let call = call_of(calls, &p.id.to_uppercase());
        for d in &p.depends_on {
            let dep = call_of(calls, &d.to_uppercase());
            assert!(
                dep.finished.unwrap() <= call.started,
                "{} started before {d} ended",
                p.id
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn phases_run_after_their_dependencies_read_their_outputs_and_stay_within_max_parallel() {
    let provider = bracketing(Duration::from_millis(100));
    let ctx = context(&provider);
    let exec = executor();
    let phases = vec![
        phase("a", "A {{ input }}", &[]),
        phase("b", "B", &[]),
        phase("c", "C", &[]),
        phase("d", "D {{ phases.a }} {{ phases.b }}", &["a", "b"]),
        phase("e", "E {{ phases.d }} {{ phases.c }}", &["d", "c"]),
    ];
    let s = workflow_skill("flow", phases.clone(), 2, "e");
    let started = Instant::now();
    let (out, events) = run(&exec, &ctx, RunRequest::new(Arc::new(s), "in")).await;
    let out = out.unwrap();

    assert_eq!(out.text, "<E <D <A in> <B>> <C>>");
    assert_eq!(streamed(&events), out.text, "only the output phase streams");
    let calls = provider.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(provider.max_concurrent(), 2);
    assert_dependencies_first(&phases, &calls);
    // a,b | c,d | e: the longest path (a → d → e), not the sum.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let ids: Vec<&str> = out.phases.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    let starts = events
        .iter()
        .filter(|e| matches!(e, ExecEvent::PhaseStarted { .. }))
        .count();
    let ends: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ExecEvent::PhaseFinished(p) => Some(p.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!((starts, ends.len(), ends.last()), (5, 5, Some(&"E")));
}

#[tokio::test]
async fn each_phase_gets_its_own_routing_and_generation_settings() {
    let provider = bracketing(Duration::ZERO);
    let ctx = context(&provider);
    let exec = executor();
    let mut big = phase("x", "X", &[]);
    big.routing.model = Some("big@scripted".into());
    big.generation.max_tokens = Some(20);
    let mut hot = phase("y", "Y {{ phases.x }}", &["x"]);
    hot.generation.temperature = Some(0.9);
    let mut s = workflow_skill("flow", vec![big, hot, phase("z", "Z", &[])], 4, "y");
    s.generation.temperature = Some(0.3);
    s.generation.max_tokens = Some(100);
    let (out, _) = run(&exec, &ctx, RunRequest::new(Arc::new(s), "")).await;
    let out = out.unwrap();
    let calls = provider.calls();
    let settings = |id: &str| {
        let c = call_of(&calls, id);
        (c.model.clone(), c.options.max_tokens, c.options.temperature)
    };
    assert_eq!(settings("X"), ("big".into(), 20, 0.3));
    assert_eq!(settings("Y"), ("m".into(), 100, 0.9));
    assert_eq!(settings("Z"), ("m".into(), 100, 0.3));
    assert_eq!(out.phases[0].model, "big@scripted");
}

#[tokio::test(start_paused = true)]
async fn a_failing_phase_stops_the_others_and_is_named() {
    let provider = ScriptedProvider::builder("scripted")
        .table([("A", "a"), ("C a", "c")])
        .delay(Duration::from_millis(100))
        .build();
    let ctx = context(&provider);
    let exec = executor();
    let phases = vec![
        phase("a", "A", &[]),
        phase("b", "B", &[]),
        phase("c", "C {{ phases.a }}", &["a"]),
    ];
    let (out, _) = run(
        &exec,
        &ctx,
        RunRequest::new(Arc::new(workflow_skill("flow", phases, 2, "c")), ""),
    )
    .await;
    let e = out.unwrap_err();
    assert_eq!(e.code, ErrorCode::SkillExecutionError);
    assert!(e.message.starts_with("phase `b` failed"), "{}", e.message);
    assert!(
        e.message.contains("no reply for the prompt \"B\""),
        "{}",
        e.message
    );
    let prompts: Vec<String> = provider
        .calls()
        .iter()
        .map(|c| c.prompt().to_owned())
        .collect();
    assert_eq!(prompts, ["A", "B"], "c never started");
    assert!(provider.calls()[0].finished.is_some(), "a was stopped");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(provider.call_count(), 2);

    provider.set_available(false);
    let phases = vec![phase("a", "A", &[])];
    let mut s = workflow_skill("down", phases, 1, "a");
    s.resilience.retries = 0;
    let (out, _) = run(&exec, &ctx, RunRequest::new(Arc::new(s), "")).await;
    let e = out.unwrap_err();
    assert_eq!(e.code, ErrorCode::ProviderUnavailable);
    assert!(e.message.starts_with("phase `a` failed"), "{}", e.message);
}

/// Ten phases in four levels (4, 3, 2, 1), each depending on every phase
/// of the level before: the longest path is four calls, the sum ten.
fn ten_phases() -> Vec<Phase> {
    let levels = [4, 3, 2, 1];
    let mut phases: Vec<Phase> = Vec::new();
    let mut previous: Vec<String> = Vec::new();
    for (level, width) in levels.into_iter().enumerate() {
        let ids: Vec<String> = (0..width).map(|i| format!("l{level}p{i}")).collect();
        for id in &ids {
            let deps: Vec<&str> = previous.iter().map(String::as_str).collect();
            let reads: String = previous
                .iter()
                .map(|d| format!(" {{{{ phases.{d} }}}}"))
                .collect();
            phases.push(phase(id, &format!("{}{reads}", id.to_uppercase()), &deps));
        }
        previous = ids;
    }
    phases
}

#[tokio::test(start_paused = true)]
async fn ten_phases_with_four_way_parallelism_take_the_longest_path_not_the_sum() {
    let delay = Duration::from_millis(100);
    let provider = bracketing(delay);
    let ctx = context(&provider);
    let exec = executor();
    let phases = ten_phases();
    let s = workflow_skill("ten", phases.clone(), 4, "l3p0");
    let started = Instant::now();
    let (out, _) = run(&exec, &ctx, RunRequest::new(Arc::new(s), "")).await;
    let out = out.unwrap();
    assert_eq!(out.phases.len(), 10);
    assert_eq!(provider.max_concurrent(), 4);
    assert_dependencies_first(&phases, &provider.calls());
    assert_eq!(
        started.elapsed(),
        delay * 4,
        "the longest path, not {:?}",
        delay * 10
    );
    assert!(out.text.starts_with("<L3P0 <L2P0 <L1P0"), "{}", out.text);
}
