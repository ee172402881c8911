//! Benchmark of the embedded Candle backend on one GGUF model: load time,
//! RSS, time to first token, prompt processing and decode speed.
//!
//! ```sh
//! cargo run --release -p skillkernel-providers --example generate_bench -- \
//!     --model ~/.cache/skillkernel/models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2
//! ```
//!
//! Prints one JSON object on stdout (progress goes to stderr). It uses only
//! the crate's public API: `GgufFile::open`, `LoadedModel::load_with_threads`,
//! `LoadedModel::encode_chat` and `LoadedModel::generate`, whose
//! `GenerationStats` supply the timings. What each figure means:
//!
//! * `load_ms` — `GgufFile::open` + `LoadedModel::load` (header, tokenizer,
//!   chat template, weights). The first load is the one whose RSS is kept;
//!   further loads for the timing statistics happen after generation.
//! * `encode_ms` — `encode_chat` alone (chat template + tokenizer), so it can
//!   be taken out of `prompt_ms`, which `generate` measures from its start.
//! * `ttft_ms` — `GenerationStats::first_token_ms`: from entering `generate`
//!   (template, tokenizer, every prompt forward pass, first sample).
//! * `prefill_tps` — prompt tokens / (`prompt_ms` − median `encode_ms`):
//!   forward passes over the prompt only. `prefill_tps_raw` keeps encoding in.
//! * `decode_tps` — forward passes after the first token / (`total_ms` −
//!   `first_token_ms`). When a run stops at `max_tokens` (finish `length`),
//!   `generate` has run one forward pass per generated token, the last one
//!   unused; when it stops at EOS it has run one fewer. Both are counted.
//!
//! Every timed run starts from an empty KV cache (`LoadedModel::clear_cache`),
//! so a repeated prompt is processed in full rather than reused.
//!
//! Threads: `--threads N` loads the model with `LoadedModel::load_with_threads`
//! (default: one per CPU). It also sets `CANDLE_NUM_THREADS` and
//! `RAYON_NUM_THREADS` for Candle's own pools, which only tensor types
//! without a kernel of the backend's use.
//!
//! The scenarios (prompts and max tokens) are built in; `--spec FILE` replaces
//! them with a JSON array of `{"name", "messages": [{"role","content"}],
//! "max_tokens"}`.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};
use skillkernel_providers::candle::{GgufFile, LoadedModel};
use skillkernel_providers::{ChatMessage, GenerationOptions};
use tokio_util::sync::CancellationToken;

struct Scenario {
    name: String,
    messages: Vec<ChatMessage>,
    max_tokens: u32,
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

/// About 200 tokens of prose for the prompt-processing scenario.
const LONG_TEXT: &str = "The lighthouse stood at the end of a narrow spit of rock, \
where the sea came in from three sides and the wind rarely stopped. For ninety years \
its keepers had climbed the one hundred and twelve steps every evening to light the lamp, \
wind the clockwork that turned the lens, and write the weather in a leather book. The last \
keeper, a woman named Ida, kept the book for twenty-six years. She recorded storms that tore \
slates from the roof, fogs so thick that the beam seemed to stop a few yards from the glass, \
and calm summer nights when fishing boats passed close enough for her to hear the crews \
talking. When the light was automated, a small electric lamp replaced the great burner and \
a sensor replaced the clockwork. Ida moved to the village, but every evening she still \
walked to the harbour wall and watched the beam come on, and she still wrote the weather \
in her book.";

fn default_scenarios() -> Vec<Scenario> {
    vec![
        // ~20 prompt tokens after the chat template: TTFT.
        Scenario {
            name: "short".into(),
            messages: vec![msg("system", "Be brief."), msg("user", "What is the capital of France?")],
            max_tokens: 1,
        },
        // ~200 prompt tokens: prompt processing.
        Scenario {
            name: "long".into(),
            messages: vec![
                msg("system", "Be brief."),
                msg(
                    "user",
                    &format!("{LONG_TEXT}\n\nSummarize the text above in one sentence."),
                ),
            ],
            max_tokens: 1,
        },
        // A short prompt whose greedy answer runs past 128 tokens: decode.
        Scenario {
            name: "decode".into(),
            messages: vec![msg(
                "user",
                "Write a long, detailed story about a robot who learns to paint. Use at least 500 words.",
            )],
            max_tokens: 128,
        },
    ]
}

fn load_spec(path: &str) -> Vec<Scenario> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    let Some(items) = value.as_array() else {
        die("--spec: expected a JSON array of scenarios");
    };
    items
        .iter()
        .map(|item| Scenario {
            name: item["name"].as_str().unwrap_or("scenario").to_owned(),
            messages: serde_json::from_value(item["messages"].clone())
                .unwrap_or_else(|e| die(&format!("--spec messages: {e}"))),
            max_tokens: item["max_tokens"].as_u64().unwrap_or(128) as u32,
        })
        .collect()
}

fn die(why: &str) -> ! {
    eprintln!("generate_bench: {why}");
    std::process::exit(2)
}

/// `VmRSS`, `RssAnon`, `RssFile`, `VmHWM` from /proc/self/status, in KiB.
fn memory() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    json!({
        "vm_rss_kib": field("VmRSS:"),
        "rss_anon_kib": field("RssAnon:"),
        "rss_file_kib": field("RssFile:"),
        "vm_hwm_kib": field("VmHWM:"),
    })
}

fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_features() -> Value {
    json!({
        "avx2": std::is_x86_feature_detected!("avx2"),
        "fma": std::is_x86_feature_detected!("fma"),
        "avx512f": std::is_x86_feature_detected!("avx512f"),
        "compiled_with_avx2": cfg!(target_feature = "avx2"),
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_features() -> Value {
    Value::Null
}

fn load(path: &std::path::Path, threads: Option<usize>) -> (LoadedModel, f64) {
    let started = Instant::now();
    let gguf = GgufFile::open(path).unwrap_or_else(|e| die(&e.to_string()));
    let model = match threads {
        Some(n) => LoadedModel::load_with_threads("bench", gguf, n),
        None => LoadedModel::load("bench", gguf),
    }
    .unwrap_or_else(|e| die(&e.to_string()));
    (model, started.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let mut model_path: Option<PathBuf> = None;
    let mut threads: Option<usize> = None;
    let mut runs = 5usize;
    let mut warmup = 1usize;
    let mut load_runs = 5usize;
    let mut spec: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--model" => model_path = Some(value("--model").into()),
            "--threads" => {
                threads = Some(
                    value("--threads")
                        .parse()
                        .unwrap_or_else(|_| die("--threads: a number")),
                )
            }
            "--runs" => {
                runs = value("--runs")
                    .parse()
                    .unwrap_or_else(|_| die("--runs: a number"))
            }
            "--warmup" => {
                warmup = value("--warmup")
                    .parse()
                    .unwrap_or_else(|_| die("--warmup: a number"))
            }
            "--load-runs" => {
                load_runs = value("--load-runs")
                    .parse()
                    .unwrap_or_else(|_| die("--load-runs: a number"))
            }
            "--spec" => spec = Some(value("--spec")),
            "-h" | "--help" => {
                eprintln!(
                    "usage: generate_bench --model FILE.gguf [--threads N] [--runs N] [--warmup N] \
                     [--load-runs N] [--spec scenarios.json]"
                );
                return;
            }
            other => die(&format!("unknown argument {other}")),
        }
    }
    let model_path = model_path.unwrap_or_else(|| die("--model FILE.gguf is required"));
    if let Some(n) = threads {
        // The backend's own kernels run on `n` threads (load_with_threads);
        // Candle's pools, used only for tensor types without a kernel of
        // ours, are sized from these before anything in Candle reads them.
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let scenarios = match &spec {
        Some(path) => load_spec(path),
        None => default_scenarios(),
    };
    let file_bytes = std::fs::metadata(&model_path).map(|m| m.len()).unwrap_or(0);

    let rss_start = memory();
    let (mut model, first_load_ms) = load(&model_path, threads);
    let rss_after_load = memory();
    eprintln!("loaded in {first_load_ms:.1} ms");

    let cancel = CancellationToken::new();
    let options = |max_tokens: u32| GenerationOptions {
        max_tokens,
        temperature: 0.0,
        top_k: None,
        top_p: None,
        repeat_penalty: None,
        seed: Some(0),
        stop: Vec::new(),
    };

    // Warm-up: every scenario once (page faults, lazily built caches, pools).
    for _ in 0..warmup {
        for s in &scenarios {
            model.clear_cache();
            model
                .generate(&s.messages, &options(s.max_tokens), &cancel, &mut |_| {})
                .unwrap_or_else(|e| die(&e.to_string()));
        }
    }

    let mut results = Vec::new();
    for s in &scenarios {
        let ids = model
            .encode_chat(&s.messages, s.max_tokens as usize)
            .unwrap_or_else(|e| die(&e.to_string()));
        let encode_ms: Vec<f64> = (0..20)
            .map(|_| {
                let t = Instant::now();
                let _ = model.encode_chat(&s.messages, s.max_tokens as usize);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let encode_med = median(&encode_ms);
        let mut run_values = Vec::new();
        let mut text = String::new();
        for r in 0..runs {
            let mut out = String::new();
            // Every run processes its whole prompt: no reuse of the KV cache
            // from the previous run (llama.cpp's side resets too).
            model.clear_cache();
            let stats = model
                .generate(&s.messages, &options(s.max_tokens), &cancel, &mut |p| {
                    out.push_str(p)
                })
                .unwrap_or_else(|e| die(&e.to_string()));
            let first = stats.first_token_ms.unwrap_or(stats.prompt_ms);
            let forwards_after_first = if stats.finish_reason == "length" {
                stats.completion_tokens as f64
            } else {
                stats.completion_tokens.saturating_sub(1) as f64
            };
            let decode_ms = stats.total_ms - first;
            let prefill_ms = (stats.prompt_ms - encode_med).max(1e-6);
            eprintln!(
                "{} run {}: prompt {} tok {:.1} ms, ttft {:.1} ms, {} tok in {:.1} ms ({})",
                s.name,
                r + 1,
                stats.prompt_tokens,
                stats.prompt_ms,
                first,
                stats.completion_tokens,
                stats.total_ms,
                stats.finish_reason
            );
            run_values.push(json!({
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "finish_reason": stats.finish_reason,
                "prompt_ms": stats.prompt_ms,
                "first_token_ms": first,
                "total_ms": stats.total_ms,
                "decode_forwards": forwards_after_first,
                "decode_ms": decode_ms,
                "decode_tps": if decode_ms > 0.0 && forwards_after_first > 0.0 { forwards_after_first * 1e3 / decode_ms } else { 0.0 },
                "prefill_tps": stats.prompt_tokens as f64 * 1e3 / prefill_ms,
                "prefill_tps_raw": stats.prompt_tokens as f64 * 1e3 / stats.prompt_ms,
            }));
            text = out;
        }
        let col =
            |key: &str| -> Vec<f64> { run_values.iter().filter_map(|v| v[key].as_f64()).collect() };
        let summary = json!({
            "ttft_ms": median(&col("first_token_ms")),
            "prompt_ms": median(&col("prompt_ms")),
            "prefill_tps": median(&col("prefill_tps")),
            "prefill_tps_raw": median(&col("prefill_tps_raw")),
            "decode_tps": median(&col("decode_tps")),
            "total_ms": median(&col("total_ms")),
        });
        results.push(json!({
            "name": s.name,
            "messages": s.messages,
            "max_tokens": s.max_tokens,
            "prompt_ids": ids,
            "encode_ms": encode_med,
            "text": text,
            "runs": run_values,
            "median": summary,
        }));
    }
    let rss_after_generate = memory();

    // More loads for the load-time statistics, after the RSS readings.
    let mut load_ms = vec![first_load_ms];
    drop(model);
    for _ in 1..load_runs {
        let (m, ms) = load(&model_path, threads);
        drop(m);
        load_ms.push(ms);
    }

    let report = json!({
        "engine": "skillkernel-candle",
        "model": model_path,
        "file_bytes": file_bytes,
        "threads_requested": threads,
        "candle_num_threads": candle_core::utils::get_num_threads(),
        "env": {
            "CANDLE_NUM_THREADS": std::env::var("CANDLE_NUM_THREADS").ok(),
            "RAYON_NUM_THREADS": std::env::var("RAYON_NUM_THREADS").ok(),
        },
        "cpu_features": cpu_features(),
        "runs": runs,
        "warmup": warmup,
        "load_ms": load_ms,
        "load_ms_median": median(&load_ms),
        "memory": {
            "start": rss_start,
            "after_load": rss_after_load,
            "after_generate": rss_after_generate,
        },
        "scenarios": results,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
