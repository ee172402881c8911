//! Benchmark of constrained decoding in the embedded engine: what an
//! output schema costs per generated token, and what compiling one costs.
//!
//! ```sh
//! cargo run --release -p skillkernel-providers --example structured_bench -- \
//!     --model ~/.cache/skillkernel/models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2
//! ```
//!
//! Prints one JSON object on stdout. Figures:
//!
//! * `vocab_ms` — the first constrained request on a model reads its
//!   vocabulary into llguidance's token trie (once per loaded model);
//! * `compile_ms` — median over `--schemas` distinct 20-property schemas
//!   (strings with bounds, integers and numbers with bounds, enums, a
//!   pattern, a nested object, an array), compiled against the model's
//!   vocabulary; `cached_ms` — the same schemas again, from the cache;
//! * `free_ms_per_token` / `constrained_ms_per_token` — decode time per
//!   token after the first (`total_ms − first_token_ms` over tokens − 1),
//!   the median of `--runs` runs of each, alternated, same prompt, greedy,
//!   KV cache emptied before each; `ratio` is constrained / free. The
//!   constrained runs include computing the mask for every token.
//!   `ttft_*` are the medians of time to first token (the first mask is
//!   computed before the first token).

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};
use skillkernel_providers::candle::{GgufFile, LoadedModel};
use skillkernel_providers::{ChatMessage, GenerationOptions, OutputFormat};
use tokio_util::sync::CancellationToken;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A schema of 20 properties, named after `seed` so each is distinct.
fn twenty_properties(seed: usize) -> Value {
    let mut properties = serde_json::Map::new();
    for i in 0..20 {
        let kind = match i % 7 {
            0 => json!({"type": "string", "maxLength": 40}),
            1 => json!({"type": "integer", "minimum": 0, "maximum": 1000}),
            2 => json!({"type": "number", "minimum": -1.5, "maximum": 99.5}),
            3 => json!({"enum": ["red", "green", "blue", "none"]}),
            4 => json!({"type": "string", "pattern": "^[a-z]{2,8}-[0-9]{1,4}$"}),
            5 => {
                json!({"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "boolean"}}, "required": ["x"]})
            }
            _ => {
                json!({"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4})
            }
        };
        properties.insert(format!("field_{seed}_{i}"), kind);
    }
    let required: Vec<&String> = properties.keys().collect();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn main() {
    let model_path = PathBuf::from(arg("--model").expect("--model FILE.gguf"));
    let threads: usize = arg("--threads").and_then(|t| t.parse().ok()).unwrap_or(2);
    let runs: usize = arg("--runs").and_then(|t| t.parse().ok()).unwrap_or(7);
    let schemas: usize = arg("--schemas").and_then(|t| t.parse().ok()).unwrap_or(20);
    let gguf = GgufFile::open(&model_path).expect("a GGUF file");
    let mut model = LoadedModel::load_with_threads("bench", gguf, threads).expect("loads");

    // The vocabulary, read once per model: time it with a trivial schema.
    let started = Instant::now();
    model.compile_format(&OutputFormat::Json).expect("compiles");
    let vocab_ms = started.elapsed().as_secs_f64() * 1e3;
    let formats: Vec<OutputFormat> = (0..schemas)
        .map(|seed| OutputFormat::JsonSchema {
            schema: twenty_properties(seed),
        })
        .collect();
    let time = |model: &mut LoadedModel| -> Vec<f64> {
        formats
            .iter()
            .map(|f| {
                let t = Instant::now();
                model.compile_format(f).expect("compiles");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    };
    let compile = time(&mut model);
    let cached = time(&mut model);

    let messages = vec![
        ChatMessage::new("system", "You describe places."),
        ChatMessage::new(
            "user",
            "Describe the city of Lisbon: its river, its hills and its trams.",
        ),
    ];
    let schema = OutputFormat::JsonSchema {
        schema: json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "description": {"type": "string", "minLength": 400, "maxLength": 600}
            },
            "required": ["city", "description"],
            "additionalProperties": false
        }),
    };
    let options = GenerationOptions {
        max_tokens: 96,
        repeat_penalty: None,
        ..GenerationOptions::default()
    };
    let cancel = CancellationToken::new();
    let (mut free, mut constrained, mut ttft_free, mut ttft_constrained) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tokens = (0, 0);
    for run in 0..runs + 1 {
        for format in [None, Some(&schema)] {
            model.clear_cache();
            let stats = model
                .generate_as(&messages, &options, format, &cancel, &mut |_| {})
                .expect("generates");
            if run == 0 {
                continue; // warm-up
            }
            let per_token = (stats.total_ms - stats.first_token_ms.unwrap_or(0.0))
                / (stats.completion_tokens.saturating_sub(1).max(1)) as f64;
            let ttft = stats.first_token_ms.unwrap_or(0.0);
            if format.is_some() {
                constrained.push(per_token);
                ttft_constrained.push(ttft);
                tokens.1 = stats.completion_tokens;
            } else {
                free.push(per_token);
                ttft_free.push(ttft);
                tokens.0 = stats.completion_tokens;
            }
        }
        eprintln!("run {run} done");
    }
    let (free_ms, constrained_ms) = (median(free), median(constrained));
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "model": model_path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "threads": threads,
            "vocab_ms": (vocab_ms * 100.0).round() / 100.0,
            "compile_ms": (median(compile) * 1000.0).round() / 1000.0,
            "cached_ms": (median(cached) * 1000.0).round() / 1000.0,
            "free_ms_per_token": (free_ms * 1000.0).round() / 1000.0,
            "constrained_ms_per_token": (constrained_ms * 1000.0).round() / 1000.0,
            "ratio": (constrained_ms / free_ms * 1000.0).round() / 1000.0,
            "ttft_free_ms": (median(ttft_free) * 100.0).round() / 100.0,
            "ttft_constrained_ms": (median(ttft_constrained) * 100.0).round() / 100.0,
            "tokens": {"free": tokens.0, "constrained": tokens.1},
            "runs": runs,
        }))
        .unwrap_or_default()
    );
}
