//! Concurrent generations on the embedded engine: aggregate decode speed
//! of N streams at once against one, through the backend's own streams
//! (`CandleProvider::stream`, the path the kernel takes), so the
//! scheduler's continuous batching is what is measured.
//!
//! ```text
//! batch_bench --model FILE.gguf [--threads T] [--streams 1,4] [--max-tokens N]
//!             [--runs R] [--warmup W]
//! ```
//!
//! Each run sends N requests at once (distinct prompts whose greedy
//! answers run long; temperature 0, no repeat penalty) to a backend
//! whose cached prefixes were dropped first, and reads every stream to
//! its end. Per run it reports:
//!
//! * `decode_tps` — tokens generated after each stream's first, summed,
//!   over the time from the moment every stream had its first token to
//!   the end of the last: the steady batched rate (llama.cpp's side of
//!   `bench/batch_bench.py` measures the same span);
//! * `wall_ms`, `ttft_ms` (each stream's), `completion_tokens`.
//!
//! Prints one JSON object: `{"streams": {"1": {...}, "4": {...}}, ...}`
//! with medians over the runs, and `prompt_ids` (each prompt as the
//! engine tokenizes it, for the peer to run the same tokens).

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use serde_json::{json, Value};
use skillkernel_providers::candle::{CandleProvider, GgufFile, LoadedModel};
use skillkernel_providers::config::CandleConfig;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, Provider, StreamEvent,
};
use tokio_util::sync::CancellationToken;

/// Prompts whose greedy answers on the default model run past 128 tokens.
pub const PROMPTS: [&str; 4] = [
    "Write a long, detailed story about a robot who learns to paint. Use at least 500 words.",
    "Write a long, detailed story about a lighthouse keeper and a storm. Use at least 500 words.",
    "Write a long, detailed essay about the history of bread. Use at least 500 words.",
    "Write a long, detailed story about a cat who becomes a sailor. Use at least 500 words.",
];

fn die(why: &str) -> ! {
    eprintln!("batch_bench: {why}");
    std::process::exit(2)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn request(model: &str, prompt: &str, max_tokens: u32) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        messages: vec![ChatMessage::new("user", prompt)],
        options: GenerationOptions {
            max_tokens,
            temperature: 0.0,
            repeat_penalty: None,
            ..GenerationOptions::default()
        },
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    }
}

/// One stream's timeline, relative to the run's start.
struct Timeline {
    first_ms: f64,
    end_ms: f64,
    tokens: u32,
    text: String,
}

async fn one_stream(provider: &CandleProvider, req: CompletionRequest, start: Instant) -> Timeline {
    let mut stream = provider
        .stream(req, CancellationToken::new())
        .await
        .unwrap_or_else(|e| die(&e.to_string()));
    let mut first_ms = None;
    let mut text = String::new();
    let mut tokens = 0;
    while let Some(event) = stream.next().await {
        match event.unwrap_or_else(|e| die(&e.to_string())) {
            StreamEvent::Text(t) => {
                first_ms.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
                text.push_str(&t);
            }
            StreamEvent::Done(stats) => tokens = stats.completion_tokens,
            StreamEvent::ToolCall(_) => {}
        }
    }
    let end_ms = start.elapsed().as_secs_f64() * 1e3;
    Timeline {
        first_ms: first_ms.unwrap_or(end_ms),
        end_ms,
        tokens,
        text,
    }
}

async fn run(provider: &CandleProvider, model: &str, n: usize, max_tokens: u32) -> Value {
    provider.forget_context().await;
    let start = Instant::now();
    let streams = (0..n).map(|i| {
        let req = request(model, PROMPTS[i % PROMPTS.len()], max_tokens);
        one_stream(provider, req, start)
    });
    let lines = futures::future::join_all(streams).await;
    let all_first = lines.iter().map(|l| l.first_ms).fold(0f64, f64::max);
    let end = lines.iter().map(|l| l.end_ms).fold(0f64, f64::max);
    let after_first: u32 = lines.iter().map(|l| l.tokens.saturating_sub(1)).sum();
    // Tokens each stream made after the last stream's first token: the
    // span where all N decode together.
    let decode_tps = after_first as f64 * 1e3 / (end - all_first).max(1e-6);
    json!({
        "decode_tps": decode_tps,
        "wall_ms": end,
        "ttft_ms": lines.iter().map(|l| l.first_ms).collect::<Vec<_>>(),
        "completion_tokens": lines.iter().map(|l| l.tokens).collect::<Vec<_>>(),
        "texts": lines.iter().map(|l| l.text.clone()).collect::<Vec<_>>(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut model: Option<PathBuf> = None;
    let mut threads = 0usize;
    let mut streams = vec![1usize, 4];
    let mut max_tokens = 128u32;
    let mut runs = 3usize;
    let mut warmup = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--model" => model = Some(PathBuf::from(value())),
            "--threads" => threads = value().parse().unwrap_or_else(|_| die("--threads N")),
            "--streams" => {
                streams = value()
                    .split(',')
                    .map(|s| s.parse().unwrap_or_else(|_| die("--streams 1,4")))
                    .collect()
            }
            "--max-tokens" => {
                max_tokens = value().parse().unwrap_or_else(|_| die("--max-tokens N"))
            }
            "--runs" => runs = value().parse().unwrap_or_else(|_| die("--runs N")),
            "--warmup" => warmup = value().parse().unwrap_or_else(|_| die("--warmup N")),
            other => die(&format!("unknown argument {other}")),
        }
    }
    let model = model.unwrap_or_else(|| die("--model FILE.gguf is required"));
    let dir = model
        .parent()
        .unwrap_or_else(|| die("the model has no directory"));
    let name = model
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_else(|| die("the model file has no name"))
        .to_lowercase();
    let most = streams.iter().copied().max().unwrap_or(1);
    let config = CandleConfig {
        threads,
        max_sequences: most,
        ..CandleConfig::default()
    };
    let prompt_ids: Vec<Vec<u32>> = {
        let gguf = GgufFile::open(&model).unwrap_or_else(|e| die(&e.to_string()));
        let tokens = LoadedModel::load_with_threads("prompts", gguf, 1)
            .unwrap_or_else(|e| die(&e.to_string()));
        PROMPTS
            .iter()
            .map(|p| {
                tokens
                    .encode_chat(&[ChatMessage::new("user", *p)], max_tokens as usize)
                    .unwrap_or_else(|e| die(&e.to_string()))
            })
            .collect()
    };
    let provider =
        CandleProvider::with_config(dir, &config).unwrap_or_else(|e| die(&e.to_string()));
    for _ in 0..warmup {
        run(&provider, &name, most, 16).await;
    }
    let mut out = serde_json::Map::new();
    for &n in &streams {
        let results: Vec<Value> = {
            let mut v = Vec::new();
            for _ in 0..runs {
                v.push(run(&provider, &name, n, max_tokens).await);
            }
            v
        };
        let tps: Vec<f64> = results
            .iter()
            .map(|r| r["decode_tps"].as_f64().unwrap_or(0.0))
            .collect();
        let wall: Vec<f64> = results
            .iter()
            .map(|r| r["wall_ms"].as_f64().unwrap_or(0.0))
            .collect();
        out.insert(
            n.to_string(),
            json!({
                "decode_tps_median": median(&tps),
                "wall_ms_median": median(&wall),
                "runs": results,
            }),
        );
    }
    let report = json!({
        "engine": "skillkernel",
        "model": model,
        "threads": if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads },
        "max_tokens": max_tokens,
        "prompt_ids": prompt_ids,
        "streams": out,
    });
    println!("{report}");
}
