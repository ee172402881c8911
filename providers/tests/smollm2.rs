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
            ChatMessage {
                role: "system".into(),
                content: "You are a helpful assistant.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: question.into(),
            },
        ],
        // Pure greedy decoding, as llama.cpp's reference answer was made.
        options: GenerationOptions {
            max_tokens: 48,
            repeat_penalty: None,
            ..GenerationOptions::default()
        },
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
