//! Continuous batching, the queue, the prefix cache and the KV memory
//! budget of the embedded engine, on the real default model through the
//! provider's own streams (the path the kernel takes).

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use skillkernel_providers::candle::CandleProvider;
use skillkernel_providers::config::CandleConfig;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, GenerationStats, Provider, ProviderError,
    StreamEvent,
};
use tokio_util::sync::CancellationToken;

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("SKILLKERNEL_MODEL_DIR")
        .map(PathBuf::from)
        .expect("set SKILLKERNEL_MODEL_DIR to a directory holding the default model (scripts/test does)");
    assert!(
        dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").exists(),
        "the default model is missing from {}",
        dir.display()
    );
    dir
}

fn provider(config: CandleConfig) -> CandleProvider {
    CandleProvider::with_config(
        model_dir(),
        &CandleConfig {
            threads: 2,
            ..config
        },
    )
    .unwrap()
}

fn ask(system: &str, question: &str, max_tokens: u32) -> CompletionRequest {
    CompletionRequest {
        model: "smollm2-135m".into(),
        messages: vec![
            ChatMessage::new("system", system),
            ChatMessage::new("user", question),
        ],
        options: GenerationOptions {
            max_tokens,
            repeat_penalty: None,
            ..GenerationOptions::default()
        },
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    }
}

const QUESTIONS: [&str; 4] = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Why is the sky blue?",
    "Write a haiku about the sea.",
];

/// The text and figures of one generation, or its error.
async fn answer(
    provider: &CandleProvider,
    request: CompletionRequest,
    cancel: CancellationToken,
) -> Result<(String, GenerationStats), ProviderError> {
    let mut stream = provider.stream(request, cancel).await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Text(t) => text.push_str(&t),
            StreamEvent::Done(stats) => return Ok((text, stats)),
            StreamEvent::ToolCall(c) => panic!("unexpected tool call {c:?}"),
        }
    }
    panic!("the stream ended without its figures")
}

fn running(provider: &CandleProvider) -> usize {
    provider.kv_caches().values().map(|f| f.sequences).sum()
}

/// Four requests at once share forward passes (none waits for another)
/// and each gets, token for token, the greedy answer it gets alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_generations_share_passes_and_answer_as_they_do_alone() {
    let system = "You are a helpful assistant.";
    let alone = provider(CandleConfig::default());
    let mut want = Vec::new();
    for q in QUESTIONS {
        let (text, stats) = answer(&alone, ask(system, q, 40), CancellationToken::new())
            .await
            .unwrap();
        assert!(stats.queue_ms < 5.0, "nothing to wait for: {stats:?}");
        want.push(text);
    }
    drop(alone);

    let together = provider(CandleConfig::default());
    let done = std::sync::atomic::AtomicBool::new(false);
    let runs = async {
        let runs = QUESTIONS
            .iter()
            .map(|q| answer(&together, ask(system, q, 40), CancellationToken::new()));
        let results = futures::future::join_all(runs).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        results
    };
    let watch = async {
        let mut most = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            most = most.max(running(&together));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most
    };
    let (results, most) = tokio::join!(runs, watch);
    let mut slowest = 0f64;
    for (result, want) in results.into_iter().zip(&want) {
        let (text, stats) = result.unwrap();
        assert_eq!(&text, want, "batched text differs from the text alone");
        slowest = slowest.max(stats.total_ms);
        assert!(stats.queue_ms < 50.0, "it waited for another: {stats:?}");
    }
    assert_eq!(most, 4, "all four ran together");
    eprintln!("four together: slowest {slowest:.0} ms");
}

/// Beyond `max_sequences` a request waits its turn (its wait is
/// reported) instead of failing, and then answers as it would alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_bound_queue_and_report_their_wait() {
    let p = provider(CandleConfig {
        max_sequences: 1,
        ..CandleConfig::default()
    });
    let system = "You are a helpful assistant.";
    let first = answer(&p, ask(system, QUESTIONS[2], 40), CancellationToken::new());
    let second = async {
        // Arrives while the first runs.
        tokio::time::sleep(Duration::from_millis(30)).await;
        answer(&p, ask(system, QUESTIONS[0], 16), CancellationToken::new()).await
    };
    // A third gives up while it waits: it hears so at once, not when a
    // slot frees.
    let third = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let cancel = CancellationToken::new();
        let waiting = answer(&p, ask(system, QUESTIONS[1], 16), cancel.clone());
        let giving_up = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        };
        let (result, ()) = tokio::join!(waiting, giving_up);
        (result, std::time::Instant::now())
    };
    let started = std::time::Instant::now();
    let (first, second, (third, third_at)) = tokio::join!(first, second, third);
    let (_, first) = first.unwrap();
    let (text, second) = second.unwrap();
    assert!(text.contains("Paris"), "{text}");
    assert!(
        second.queue_ms > 0.5 * (first.total_ms - 30.0),
        "the second waited for the first: {second:?} after {first:?}"
    );
    assert!(second.first_token_ms.unwrap() > second.queue_ms);
    assert!(matches!(third, Err(ProviderError::Cancelled)), "{third:?}");
    let third_ms = (third_at - started).as_secs_f64() * 1e3;
    assert!(
        third_ms < first.total_ms,
        "the cancelled request ended at {third_ms:.0} ms, after the first ({:.0} ms)",
        first.total_ms
    );
    assert!(first.queue_ms < 5.0, "{first:?}");
}

/// Cancelling one of three running generations ends it alone; the other
/// two finish with the answers they give alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_one_generation_leaves_the_others_untouched() {
    let system = "You are a helpful assistant.";
    let p = provider(CandleConfig::default());
    let mut want = Vec::new();
    for q in [QUESTIONS[0], QUESTIONS[1]] {
        want.push(
            answer(&p, ask(system, q, 32), CancellationToken::new())
                .await
                .unwrap()
                .0,
        );
    }
    // A fresh provider: no cached prefixes from the runs alone.
    let p = provider(CandleConfig::default());
    let cancel = CancellationToken::new();
    let doomed = async {
        let mut stream = p
            .stream(ask(system, QUESTIONS[3], 200), cancel.clone())
            .await
            .unwrap();
        let mut pieces = 0;
        let mut last = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(StreamEvent::Text(_)) => {
                    pieces += 1;
                    if pieces == 3 {
                        cancel.cancel();
                    }
                }
                Ok(StreamEvent::Done(stats)) => last = Some(Ok(stats)),
                Ok(StreamEvent::ToolCall(_)) => {}
                Err(e) => last = Some(Err(e)),
            }
        }
        last
    };
    let others = futures::future::join_all(
        [QUESTIONS[0], QUESTIONS[1]]
            .map(|q| answer(&p, ask(system, q, 32), CancellationToken::new())),
    );
    let (doomed, others) = tokio::join!(doomed, others);
    let stats = doomed.unwrap().unwrap();
    assert_eq!(stats.finish_reason, "cancelled");
    assert!(stats.completion_tokens < 200, "{stats:?}");
    for (got, want) in others.into_iter().zip(&want) {
        let (text, stats) = got.unwrap();
        assert_eq!(&text, want);
        assert!(stats.queue_ms < 50.0, "it ran beside the others: {stats:?}");
    }
}

/// `%clear --conversation` (forget_context) while a generation runs: it
/// finishes as it would, and its cache does not come back afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_during_a_generation_keeps_nothing_of_it() {
    let p = provider(CandleConfig::default());
    let system = "You are a helpful assistant.";
    let mut stream = p
        .stream(ask(system, QUESTIONS[3], 48), CancellationToken::new())
        .await
        .unwrap();
    let mut forgot = false;
    let mut stats = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Text(_) if !forgot => {
                p.forget_context().await;
                forgot = true;
            }
            StreamEvent::Done(s) => stats = Some(s),
            _ => {}
        }
    }
    assert!(forgot);
    assert!(stats.unwrap().completion_tokens > 1);
    let held: usize = p.kv_caches().values().map(|f| f.positions).sum();
    assert_eq!(held, 0, "the forgotten conversation was cached again");
    // A positive control: without the forget, it is kept.
    answer(&p, ask(system, QUESTIONS[0], 8), CancellationToken::new())
        .await
        .unwrap();
    let held: usize = p.kv_caches().values().map(|f| f.positions).sum();
    assert!(held > 20, "{held}");
}

/// A long fixed head (a skill's instructions) is run once: the next
/// request that starts with it copies its keys and values, answers as it
/// would from scratch, and reaches its first token much sooner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_prompt_head_is_run_once_and_reused() {
    let head = "You are a meticulous assistant. ".repeat(60);
    let p = provider(CandleConfig::default());
    let (_, first) = answer(&p, ask(&head, QUESTIONS[0], 8), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(first.cached_prompt_tokens, 0);
    let (text, second) = answer(&p, ask(&head, QUESTIONS[1], 8), CancellationToken::new())
        .await
        .unwrap();
    assert!(first.prompt_tokens > 300, "{first:?}");
    assert!(
        second.cached_prompt_tokens as f64 > 0.9 * first.prompt_tokens as f64,
        "the head came from the cache: {second:?}"
    );
    // The same request on a provider that has cached nothing.
    let fresh = provider(CandleConfig::default());
    let (want, _) = answer(
        &fresh,
        ask(&head, QUESTIONS[1], 8),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(text, want);
    // An unrelated prompt shares nothing but the template's first tokens.
    let (_, other) = answer(
        &p,
        ask("Be brief.", QUESTIONS[2], 4),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(other.cached_prompt_tokens < 10, "{other:?}");
}

/// Under a tight KV budget, cached prefixes are dropped to make room for
/// a new generation, and a generation that cannot fit even then is
/// refused with a message that says why and what to change; the engine
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_drops_cached_prefixes_before_refusing_work() {
    // SmolLM2 stores 30 layers × 192 × 2 values per position: 22.5 KiB in
    // f16. 4 MiB holds about 180 positions: one short generation.
    let p = provider(CandleConfig {
        kv_budget_mib: 4,
        ..CandleConfig::default()
    });
    let system = "You are a helpful assistant.";
    let (text, _) = answer(&p, ask(system, QUESTIONS[0], 16), CancellationToken::new())
        .await
        .unwrap();
    assert!(text.contains("Paris"), "{text}");
    let cached: usize = p.kv_caches().values().map(|f| f.positions).sum();
    assert!(cached > 20, "the first generation is cached: {cached}");

    // Its prompt and 150 tokens need ~175 positions: the cached prefix
    // must go to make room, and it runs.
    let (_, stats) = answer(
        &p,
        ask("Be brief.", QUESTIONS[2], 150),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(stats.completion_tokens > 0);
    let prefixes: usize = p.kv_caches().values().map(|f| f.prefixes).sum();
    assert_eq!(prefixes, 1, "only the second generation is cached now");

    // 400 tokens can never fit in 4 MiB: refused, with the way out.
    let refused = answer(&p, ask(system, QUESTIONS[1], 400), CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("not enough memory") && refused.contains("kv_budget_mib"),
        "{refused}"
    );
    // And the engine still serves what fits.
    let (text, _) = answer(&p, ask(system, QUESTIONS[0], 16), CancellationToken::new())
        .await
        .unwrap();
    assert!(text.contains("Paris"), "{text}");
}
