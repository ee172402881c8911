//! The embedded default model, for real: SmolLM2-135M-Instruct from the
//! model directory (`SKILLKERNEL_MODEL_DIR`; `packaging/fetch-default-model`
//! installs it, and `scripts/test` runs that first).

use std::path::PathBuf;

use futures::StreamExt;
use skillkernel_providers::candle::CandleProvider;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, Provider, StreamEvent,
};
use tokio_util::sync::CancellationToken;

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("SKILLKERNEL_MODEL_DIR")
        .map(PathBuf::from)
        .expect("set SKILLKERNEL_MODEL_DIR to a directory holding the default model (scripts/test does)");
    assert!(
        dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").exists(),
        "the default model is missing from {}: run packaging/fetch-default-model {}",
        dir.display(),
        dir.display()
    );
    dir
}

fn ask(question: &str) -> CompletionRequest {
    CompletionRequest {
        model: "smollm2-135m".into(),
        messages: vec![
            ChatMessage::new("system", "You are a helpful assistant."),
            ChatMessage::new("user", question),
        ],
        // Pure greedy decoding, as llama.cpp's reference answer was made.
        options: GenerationOptions {
            max_tokens: 48,
            repeat_penalty: None,
            ..GenerationOptions::default()
        },
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_smollm2_knows_the_capital_of_france() {
    let provider = CandleProvider::new(model_dir()).unwrap();
    let mut stream = provider
        .stream(
            ask("What is the capital of France?"),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let mut pieces = Vec::new();
    let mut stats = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Text(t) => pieces.push(t),
            StreamEvent::Done(s) => stats = Some(s),
            StreamEvent::ToolCall(call) => panic!("no tools were offered: {call:?}"),
        }
    }
    let text: String = pieces.concat();
    assert!(text.contains("Paris"), "answer: {text:?}");
    assert!(pieces.len() > 1, "streamed in pieces");
    let stats = stats.unwrap();
    assert!(stats.prompt_tokens > 10);
    assert!(stats.completion_tokens > 0);
    eprintln!("{text:?} {stats:?} {:.1} tok/s", stats.tokens_per_second());
}

#[test]
fn tokenizer_round_trips_and_knows_special_tokens() {
    use skillkernel_providers::candle::GgufFile;
    let gguf = GgufFile::open(&model_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let tok = skillkernel_providers::candle::load_tokenizer(&gguf).unwrap();
    let text = "<|im_start|>user\nWhat is the capital of France? 1234<|im_end|>\n";
    let enc = tok.encode(text, false).unwrap();
    eprintln!("{:?}", enc.get_ids());
    eprintln!("{:?}", enc.get_tokens());
    assert_eq!(enc.get_ids()[0], 1, "<|im_start|> is one special token");
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
}

/// Greedy text of `request` on a freshly loaded model whose KV cache is
/// stored as `kind`, with the cache's figures after it.
fn generate_with(
    kind: skillkernel_providers::candle::KvType,
    request: &CompletionRequest,
) -> (String, skillkernel_providers::candle::KvFigures) {
    use skillkernel_providers::candle::{GgufFile, LoadedModel};
    let gguf = GgufFile::open(&model_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let mut model = LoadedModel::load_with_threads("smollm2", gguf, 2).unwrap();
    model.set_kv_type(kind);
    let mut text = String::new();
    model
        .generate(
            &request.messages,
            &request.options,
            &CancellationToken::new(),
            &mut |piece| text.push_str(piece),
        )
        .unwrap();
    (text, model.kv_figures())
}

/// The f16 and 8-bit caches cost a half and a bit over a quarter of f32's
/// memory per position. f16 (the default) leaves the greedy answer as it
/// was; Q8_0 may tip a near tie — "colour" for "color" here — and still
/// answers.
#[test]
fn smaller_kv_caches_cost_less_and_f16_keeps_the_greedy_answer() {
    use skillkernel_providers::candle::KvType;
    let request = ask("Name three primary colours.");
    let (exact, f32_figures) = generate_with(KvType::F32, &request);
    for kind in [KvType::F16, KvType::Q8_0] {
        let (text, figures) = generate_with(kind, &request);
        if kind == KvType::F16 {
            assert_eq!(text, exact, "{kind}");
        } else {
            assert!(
                text.contains("Red") && text.contains("Blue"),
                "{kind}: {text}"
            );
        }
        assert_eq!(figures.kind, Some(kind));
        assert_eq!(figures.positions, f32_figures.positions);
        let ratio = figures.bytes as f64 / f32_figures.bytes as f64;
        let want = kind.bytes_per_value() / 4.0;
        assert!(
            (ratio - want).abs() < 0.01,
            "{kind}: {ratio} of f32's bytes"
        );
    }
    // 30 layers × 3 KV heads × 64 × (keys, values), one byte and a bit each.
    let per_position = 30.0 * 192.0 * 2.0 * KvType::Q8_0.bytes_per_value();
    eprintln!(
        "{} positions: f32 {} bytes, q8_0 {:.0} bytes",
        f32_figures.positions,
        f32_figures.bytes,
        per_position * f32_figures.positions as f64
    );
}

async fn answer(provider: &CandleProvider, request: CompletionRequest) -> String {
    let mut stream = provider
        .stream(request, CancellationToken::new())
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        if let StreamEvent::Text(t) = event.unwrap() {
            text.push_str(&t);
        }
    }
    text
}

fn cached_positions(provider: &CandleProvider) -> usize {
    provider.kv_caches().values().map(|f| f.positions).sum()
}

/// A cache left unused past `kv_cache_idle_secs` is dropped; the next turn
/// rebuilds it from the conversation and answers as before. Forgetting the
/// context drops it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kv_cache_is_dropped_and_the_next_turn_rebuilds_it() {
    let config = skillkernel_providers::config::CandleConfig {
        kv_cache_idle_secs: 1,
        threads: 2,
        ..Default::default()
    };
    let provider = CandleProvider::with_config(model_dir(), &config).unwrap();
    let first = ask("What is the capital of France?");
    let reply = answer(&provider, first.clone()).await;
    assert!(reply.contains("Paris"), "{reply}");
    let held = cached_positions(&provider);
    assert!(held > 20, "the conversation is cached: {held}");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cached_positions(&provider) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle cache was never dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(provider.status().await.detail.contains("KV cache empty"));

    // The next turn runs the whole conversation again.
    let mut next = first;
    next.messages.push(ChatMessage::new("assistant", reply));
    next.messages
        .push(ChatMessage::new("user", "And of Italy?"));
    let reply = answer(&provider, next).await;
    assert!(reply.contains("Rome"), "{reply}");
    assert!(cached_positions(&provider) > held, "rebuilt and extended");
    let detail = provider.status().await.detail;
    assert!(detail.contains("f16") && detail.contains("MiB"), "{detail}");

    provider.forget_context().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cached_positions(&provider) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "forgetting kept the cache"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
