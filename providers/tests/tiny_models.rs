//! The Candle backend on tiny generated models: loading both
//! architectures, sampling, streaming, stop strings, cancellation, and
//! every kind of bad model file.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use skillkernel_providers::candle::CandleProvider;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, Provider, ProviderError, StreamEvent,
};
use support::tiny_gguf::{self, Shape};
use tokio_util::sync::CancellationToken;

fn request(model: &str, options: GenerationOptions) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        messages: vec![ChatMessage::new("user", "hello there")],
        options,
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    }
}

fn greedy(max_tokens: u32) -> GenerationOptions {
    GenerationOptions {
        max_tokens,
        repeat_penalty: None,
        ..GenerationOptions::default()
    }
}

async fn model_names(p: &CandleProvider) -> Vec<String> {
    p.list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect()
}

async fn generate(
    p: &CandleProvider,
    req: CompletionRequest,
) -> (Vec<String>, skillkernel_providers::GenerationStats) {
    let mut stream = p.stream(req, CancellationToken::new()).await.unwrap();
    let mut pieces = Vec::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Text(t) => pieces.push(t),
            StreamEvent::Done(stats) => return (pieces, stats),
            StreamEvent::ToolCall(call) => panic!("no tools were offered: {call:?}"),
        }
    }
    panic!("stream ended without stats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_and_qwen2_shapes_load_and_generate_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    tiny_gguf::write(dir.path(), "tiny-llama", Shape::llama(), None);
    tiny_gguf::write(dir.path(), "tiny-qwen2", Shape::qwen2(), None);
    let p = CandleProvider::new(dir.path()).unwrap();
    let names = model_names(&p).await;
    assert_eq!(names, ["tiny-llama", "tiny-qwen2"]);
    for model in ["tiny-llama", "tiny-qwen2"] {
        let info = p.info(model).await.unwrap();
        assert_eq!(info.family.as_deref(), Some(&model[5..]));
        let (a, stats) = generate(&p, request(model, greedy(12))).await;
        let (b, _) = generate(&p, request(model, greedy(12))).await;
        assert_eq!(a, b, "greedy decoding is deterministic for {model}");
        assert!(stats.prompt_tokens > 5);
        assert!(stats.completion_tokens > 0 && stats.completion_tokens <= 12);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_sampling_repeats_and_different_seeds_differ() {
    let dir = tempfile::tempdir().unwrap();
    tiny_gguf::write(dir.path(), "tiny", Shape::llama(), None);
    let p = CandleProvider::new(dir.path()).unwrap();
    let sampled = |seed| GenerationOptions {
        max_tokens: 24,
        temperature: 1.5,
        top_k: Some(50),
        top_p: Some(0.95),
        seed: Some(seed),
        repeat_penalty: Some(1.2),
        ..GenerationOptions::default()
    };
    let (a, _) = generate(&p, request("tiny", sampled(1))).await;
    let (b, _) = generate(&p, request("tiny", sampled(1))).await;
    let (c, _) = generate(&p, request("tiny", sampled(2))).await;
    assert_eq!(a, b);
    assert_ne!(a.concat(), c.concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_streams_in_pieces_and_respects_max_tokens() {
    let dir = tempfile::tempdir().unwrap();
    tiny_gguf::write(dir.path(), "tiny", Shape::llama(), None);
    let p = CandleProvider::new(dir.path()).unwrap();
    let (pieces, stats) = generate(&p, request("tiny", greedy(40))).await;
    assert!(pieces.len() > 1, "streamed, not delivered at the end");
    assert!(stats.completion_tokens <= 40);
    assert_eq!(
        stats.finish_reason == "length",
        stats.completion_tokens == 40
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_end_generation_and_are_not_emitted() {
    let dir = tempfile::tempdir().unwrap();
    tiny_gguf::write(dir.path(), "tiny", Shape::llama(), None);
    let p = CandleProvider::new(dir.path()).unwrap();
    let (free, _) = generate(&p, request("tiny", greedy(30))).await;
    let text = free.concat();
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 6, "need some output to cut: {text:?}");
    let stop: String = chars[3..5].iter().collect();
    let cut_at = text.find(&stop).unwrap();
    let options = GenerationOptions {
        stop: vec![stop.clone()],
        ..greedy(30)
    };
    let (stopped, stats) = generate(&p, request("tiny", options)).await;
    assert_eq!(stopped.concat(), text[..cut_at]);
    assert_eq!(stats.finish_reason, "stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_generation_within_100ms() {
    let dir = tempfile::tempdir().unwrap();
    let big = Shape {
        layers: 8,
        embedding: 256,
        ff: 768,
        context: 4096,
        ..Shape::llama()
    };
    tiny_gguf::write(dir.path(), "slow", big, None);
    let p = CandleProvider::new(dir.path()).unwrap();
    let cancel = CancellationToken::new();
    let mut stream = p
        .stream(request("slow", greedy(3000)), cancel.clone())
        .await
        .unwrap();
    // Wait for generation to be under way.
    let mut seen = 0;
    while seen < 3 {
        match stream.next().await.unwrap().unwrap() {
            StreamEvent::Text(_) => seen += 1,
            StreamEvent::Done(_) => panic!("finished before cancel"),
            StreamEvent::ToolCall(call) => panic!("no tools were offered: {call:?}"),
        }
    }
    let t = Instant::now();
    cancel.cancel();
    let mut finish = None;
    while let Some(event) = stream.next().await {
        if let Ok(StreamEvent::Done(stats)) = event {
            finish = Some(stats.finish_reason);
        }
    }
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(finish.as_deref(), Some("cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_template_comes_from_the_file_with_chatml_as_fallback() {
    let dir = tempfile::tempdir().unwrap();
    // A template that says something recognisable before the answer slot.
    let custom =
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] ";
    tiny_gguf::write(dir.path(), "custom", Shape::llama(), Some(custom));
    tiny_gguf::write(dir.path(), "plain", Shape::llama(), None);
    let custom_model = skillkernel_providers::candle::LoadedModel::load(
        "custom",
        skillkernel_providers::candle::GgufFile::open(&dir.path().join("custom.gguf")).unwrap(),
    )
    .unwrap();
    let plain_model = skillkernel_providers::candle::LoadedModel::load(
        "plain",
        skillkernel_providers::candle::GgufFile::open(&dir.path().join("plain.gguf")).unwrap(),
    )
    .unwrap();
    let msgs = request("x", greedy(1)).messages;
    let custom_tokens = custom_model.encode_chat(&msgs, 1).unwrap();
    let plain_tokens = plain_model.encode_chat(&msgs, 1).unwrap();
    // ChatML opens with the <|im_start|> special token (id 1); the custom
    // template opens with "[" (a byte token).
    assert_eq!(plain_tokens[0], 1);
    assert_ne!(custom_tokens[0], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_model_files_give_clear_errors_and_the_backend_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny_gguf::write(dir.path(), "good", Shape::llama(), None);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(dir.path().join("truncated.gguf"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.path().join("notgguf.gguf"), b"this is not a model").unwrap();
    let mystery = Shape {
        arch: "mamba",
        ..Shape::llama()
    };
    tiny_gguf::write(dir.path(), "mystery", mystery, None);
    let p = CandleProvider::new(dir.path()).unwrap();

    // A broken file is found when the model is first loaded, so the error
    // arrives on the stream.
    let stream_err = |name: &'static str| {
        let p = &p;
        async move {
            let mut s = p
                .stream(request(name, greedy(4)), CancellationToken::new())
                .await
                .unwrap();
            match s.next().await.unwrap() {
                Err(e) => e.to_string(),
                Ok(other) => panic!("{name}: expected an error, got {other:?}"),
            }
        }
    };
    let truncated = stream_err("truncated").await;
    assert!(truncated.contains("truncated.gguf"), "{truncated}");
    assert!(
        truncated.contains("re-download") || truncated.contains("truncated"),
        "{truncated}"
    );
    let not_gguf = stream_err("notgguf").await;
    assert!(not_gguf.contains("not a readable GGUF"), "{not_gguf}");
    let arch = stream_err("mystery").await;
    assert!(arch.contains("`mamba` is not supported"), "{arch}");
    let missing = p
        .stream(
            request("nothing-like-it", greedy(4)),
            CancellationToken::new(),
        )
        .await
        .err()
        .map(|e: ProviderError| e.to_string())
        .expect("an unknown model is refused at once");
    assert!(missing.contains("fetch-default-model"), "{missing}");
    // `list` skips the broken files and still shows the good one, which
    // still generates.
    let names = model_names(&p).await;
    assert_eq!(names, ["good"]);
    let (_, stats) = generate(&p, request("good", greedy(4))).await;
    assert!(stats.completion_tokens > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_copies_checked_models_and_leaves_nothing_on_failure() {
    let outside = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let good = tiny_gguf::write(outside.path(), "Fresh-Model", Shape::qwen2(), None);
    let bytes = std::fs::read(&good).unwrap();
    let broken = outside.path().join("broken.gguf");
    std::fs::write(&broken, &bytes[..bytes.len() - 100]).unwrap();
    let p = CandleProvider::new(models.path()).unwrap();

    let info = p.import(&good, None).await.unwrap();
    assert_eq!(info.name, "fresh-model");
    assert_eq!(info.family.as_deref(), Some("qwen2"));
    let renamed = p.import(&good, Some("Other")).await.unwrap();
    assert_eq!(renamed.name, "other");
    let again = p.import(&good, None).await.unwrap_err().to_string();
    assert!(again.contains("already exists"), "{again}");
    let bad = p.import(&broken, None).await.unwrap_err().to_string();
    assert!(bad.contains("truncated"), "{bad}");

    let mut names: Vec<String> = std::fs::read_dir(models.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["fresh-model.gguf", "other.gguf"],
        "no partial files"
    );
    let (_, stats) = generate(&p, request("fresh-model", greedy(3))).await;
    assert!(stats.completion_tokens > 0);
}
