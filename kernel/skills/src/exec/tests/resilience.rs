//! Retries, the timeout, the circuit breaker and the metrics they leave.

use std::sync::Arc;
use std::time::Duration;

use skillkernel_providers::scripted::ScriptedProvider;
use tokio::time::Instant;

use super::{context, executor, prompt_skill, run};
use crate::exec::{CircuitState, ExecEvent, RunRequest};
use crate::{ErrorCode, Skill};

fn echo(retries: u32) -> Arc<Skill> {
    let mut s = prompt_skill("echo", None, "{{ input }}");
    s.resilience.retries = retries;
    Arc::new(s)
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_doubling_backoff() {
    let provider = ScriptedProvider::builder("scripted").fail_first(2).build();
    let ctx = context(&provider);
    let exec = executor();
    let started = Instant::now();
    let (out, events) = run(&exec, &ctx, RunRequest::new(echo(2), "hi")).await;
    let out = out.unwrap();
    assert_eq!(out.text, "hi");
    assert_eq!(
        (out.attempts, out.phases[0].attempts, out.totals.retries),
        (3, 3, 2)
    );
    let retries: Vec<(u32, Duration)> = events
        .iter()
        .filter_map(|e| match e {
            ExecEvent::Retry {
                attempt,
                delay,
                reason,
                ..
            } => {
                assert!(reason.contains("unavailable"), "{reason}");
                Some((*attempt, *delay))
            }
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2);
    for ((attempt, delay), base) in retries.into_iter().zip([100, 200]) {
        let ms = delay.as_secs_f64() * 1e3;
        assert!(
            ms <= base as f64 && ms >= base as f64 * 0.9,
            "attempt {attempt}: {ms} ms"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(270) && waited <= Duration::from_millis(300),
        "{waited:?}"
    );
    assert_eq!(exec.metrics().skill("echo").unwrap().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn only_transient_failures_are_retried_and_exhausted_retries_say_so() {
    let provider = ScriptedProvider::builder("scripted").models(&["m"]).build();
    let ctx = context(&provider);
    let exec = executor();
    let mut missing = prompt_skill("missing", None, "{{ input }}");
    missing.routing.model = Some("nope@scripted".into());
    let (out, events) = run(&exec, &ctx, RunRequest::new(Arc::new(missing), "x")).await;
    let e = out.unwrap_err();
    assert_eq!(e.code, ErrorCode::SkillExecutionError);
    assert!(
        e.message.contains("`nope@scripted`") && e.hint.contains("%model pull"),
        "{e:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, ExecEvent::Retry { .. })));

    provider.fail_next(5);
    let (out, _) = run(&exec, &ctx, RunRequest::new(echo(2), "x")).await;
    let e = out.unwrap_err();
    assert_eq!(e.code, ErrorCode::ProviderUnavailable);
    assert!(e.message.contains("after 3 attempts"), "{}", e.message);
    assert!(e.hint.contains("%model status"), "{}", e.hint);
    assert_eq!(provider.call_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_run_longer_than_its_timeout_fails_with_skill_timeout() {
    let provider = ScriptedProvider::builder("scripted")
        .delay(Duration::from_secs(10))
        .build();
    let ctx = context(&provider);
    let exec = executor();
    let mut s = prompt_skill("slow", None, "{{ input }}");
    s.resilience.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let (out, _) = run(&exec, &ctx, RunRequest::new(Arc::new(s), "x")).await;
    let e = out.unwrap_err();
    assert_eq!(e.code, ErrorCode::SkillTimeout);
    assert!(
        e.message.contains("2.0 s") && e.hint.contains("resilience.timeout"),
        "{e:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(
        provider.calls()[0].finished.is_some(),
        "the call was stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_refuses_half_opens_and_closes() {
    let provider = ScriptedProvider::builder("scripted").build();
    let ctx = context(&provider);
    let exec = executor();
    let mut s = prompt_skill("flaky", None, "{{ input }}");
    s.resilience.retries = 0;
    s.resilience.circuit_threshold = 2;
    s.resilience.circuit_recovery = Duration::from_secs(30);
    let s = Arc::new(s);
    let go = || RunRequest::new(s.clone(), "x");

    provider.set_available(false);
    for _ in 0..2 {
        let e = run(&exec, &ctx, go()).await.0.unwrap_err();
        assert_eq!(e.code, ErrorCode::ProviderUnavailable);
    }
    let open = exec.breaker("flaky");
    assert_eq!(
        (open.state, open.consecutive_failures),
        (CircuitState::Open, 2)
    );
    assert_eq!(open.retry_in, Some(Duration::from_secs(30)));

    provider.set_available(true);
    let e = run(&exec, &ctx, go()).await.0.unwrap_err();
    assert_eq!(e.code, ErrorCode::CircuitBreakerOpen);
    assert!(
        e.hint.contains("30.0 s") && e.hint.contains("%skill reset flaky"),
        "{}",
        e.hint
    );
    assert_eq!(provider.call_count(), 0, "refused without a model call");

    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(exec.breaker("flaky").state, CircuitState::HalfOpen);
    provider.set_available(false);
    run(&exec, &ctx, go()).await.0.unwrap_err();
    assert_eq!(
        exec.breaker("flaky").state,
        CircuitState::Open,
        "a failed trial reopens"
    );

    tokio::time::advance(Duration::from_secs(30)).await;
    provider.set_available(true);
    assert_eq!(run(&exec, &ctx, go()).await.0.unwrap().text, "x");
    let closed = exec.breaker("flaky");
    assert_eq!(
        (
            closed.state,
            closed.consecutive_failures,
            closed.times_opened
        ),
        (CircuitState::Closed, 0, 2)
    );

    provider.set_available(false);
    for _ in 0..2 {
        run(&exec, &ctx, go()).await.0.unwrap_err();
    }
    exec.reset("flaky");
    provider.set_available(true);
    assert!(
        run(&exec, &ctx, go()).await.0.is_ok(),
        "reset closes it at once"
    );
}

#[tokio::test]
async fn metrics_count_executions_errors_and_tokens() {
    let provider = ScriptedProvider::builder("scripted").build();
    let ctx = context(&provider);
    let exec = executor();
    for input in ["one two", "three"] {
        run(&exec, &ctx, RunRequest::new(echo(0), input))
            .await
            .0
            .unwrap();
    }
    provider.set_available(false);
    run(&exec, &ctx, RunRequest::new(echo(0), "x"))
        .await
        .0
        .unwrap_err();
    let m = exec.metrics().skill("echo").unwrap();
    assert_eq!(m.executions, 3);
    assert_eq!(m.execution.count, 3);
    assert_eq!(m.errors.get("PROVIDER_UNAVAILABLE"), Some(&1));
    assert_eq!((m.prompt_tokens, m.completion_tokens), (3, 3));
    assert_eq!((m.retries, m.cache_hits), (0, 0));
    let text = exec.metrics().render_prometheus();
    assert!(
        text.contains("skillkernel_skill_executions_total{skill=\"echo\"} 3"),
        "{text}"
    );
}
