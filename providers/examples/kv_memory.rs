//! What a conversation costs in memory on the embedded engine, for each KV
//! cache type: a ten-turn conversation with the default model through
//! `CandleProvider` (the daemon's path), RSS after the model is loaded,
//! after each turn, and after the cache has gone idle and been dropped.
//!
//! ```sh
//! cargo run --release -p skillkernel-providers --example kv_memory -- \
//!     --models ~/.cache/skillkernel/models --kv q8_0 [--turns 10] [--idle-secs 2] \
//!     [--max-tokens 512]
//! ```
//!
//! Run once per `--kv` (f32, f16, q8_0): each run is its own process, so
//! one type's freed memory cannot flatter the next. Prints one JSON object.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use skillkernel_providers::candle::{CandleProvider, KvType};
use skillkernel_providers::config::CandleConfig;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, Provider, StreamEvent,
};
use tokio_util::sync::CancellationToken;

/// Resident set size of this process, from /proc.
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

const QUESTIONS: [&str; 10] = [
    "Tell me about the history of Paris.",
    "What are its most famous museums?",
    "Describe the Louvre's collection.",
    "Which painters worked in Montmartre?",
    "How did the Impressionists change painting?",
    "Who was Claude Monet?",
    "What is special about his water lilies?",
    "Where can I see them today?",
    "Suggest a three-day plan for an art lover in Paris.",
    "Summarise our conversation in a few sentences.",
];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let models = PathBuf::from(arg("--models").expect("--models DIR"));
    let kv: KvType = arg("--kv")
        .unwrap_or_else(|| "q8_0".into())
        .parse()
        .expect("--kv f32|f16|q8_0");
    let turns: usize = arg("--turns").map_or(10, |t| t.parse().expect("--turns N"));
    let idle: u64 = arg("--idle-secs").map_or(2, |t| t.parse().expect("--idle-secs N"));
    let config = CandleConfig {
        kv_cache: kv,
        kv_cache_idle_secs: idle,
        ..CandleConfig::default()
    };
    let provider = CandleProvider::with_config(&models, &config).expect("provider");
    let before_load = rss_mib();
    let mut messages = vec![ChatMessage::new("system", "You are a helpful assistant.")];
    let options = GenerationOptions {
        max_tokens: arg("--max-tokens").map_or(512, |t| t.parse().expect("--max-tokens N")),
        repeat_penalty: Some(1.2),
        ..GenerationOptions::default()
    };
    let mut after_turn = Vec::new();
    let mut loaded = None;
    for question in QUESTIONS.iter().cycle().take(turns) {
        messages.push(ChatMessage::new("user", *question));
        let request = CompletionRequest {
            model: "smollm2-135m".into(),
            messages: messages.clone(),
            options: options.clone(),
            format: None,
            tools: Vec::new(),
            tool_choice: Default::default(),
        };
        let mut stream = provider
            .stream(request, CancellationToken::new())
            .await
            .expect("stream");
        let mut reply = String::new();
        while let Some(event) = stream.next().await {
            match event.expect("generation") {
                StreamEvent::Text(t) => reply.push_str(&t),
                StreamEvent::Done(_) => {}
                StreamEvent::ToolCall(_) => {}
            }
        }
        messages.push(ChatMessage::new("assistant", reply));
        if loaded.is_none() {
            // The first turn loads the model; its cache is small yet.
            loaded = Some(rss_mib());
        }
        let positions: usize = provider.kv_caches().values().map(|f| f.positions).sum();
        let kv_bytes: u64 = provider.kv_caches().values().map(|f| f.bytes).sum();
        eprintln!(
            "turn {}: {positions} positions, KV {:.1} MiB, RSS {:.1} MiB",
            after_turn.len() + 1,
            kv_bytes as f64 / (1 << 20) as f64,
            rss_mib()
        );
        after_turn.push(json!({"positions": positions, "kv_mib": kv_bytes as f64 / (1 << 20) as f64, "rss_mib": rss_mib()}));
    }
    let peak = rss_mib();
    let waited = Instant::now();
    while provider.kv_caches().values().any(|f| f.positions > 0) {
        assert!(
            waited.elapsed() < Duration::from_secs(idle + 30),
            "never dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let model_file = std::fs::metadata(models.join("SmolLM2-135M-Instruct.Q4_1.gguf"))
        .map(|m| m.len() as f64 / (1 << 20) as f64)
        .unwrap_or(0.0);
    println!(
        "{}",
        json!({
            "kv": kv.as_str(),
            "model_file_mib": model_file,
            "rss_before_load_mib": before_load,
            "rss_after_first_turn_mib": loaded,
            "rss_after_last_turn_mib": peak,
            "rss_after_idle_drop_mib": rss_mib(),
            "turns": after_turn,
            "status": provider.status().await.detail,
        })
    );
}
