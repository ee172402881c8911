//! What the sandbox benches share: the helper binary, percentiles, and
//! where the JSON result line goes.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The `skillkernel` binary: `$SKILLKERNEL_BIN`, else
/// `target/release/skillkernel` (`scripts/bench-sandbox` builds it).
pub fn helper() -> PathBuf {
    if let Some(bin) = std::env::var_os("SKILLKERNEL_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("release/skillkernel")
}

/// p50 and p95 in milliseconds (three decimals).
pub fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        (samples[i].as_secs_f64() * 1e6).round() / 1e3
    };
    (at(0.50), at(0.95))
}

/// Prints the result line, and appends it to `$BENCH_JSON` when set.
pub fn publish(out: &serde_json::Value) {
    println!("{out}");
    if let Ok(path) = std::env::var("BENCH_JSON") {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{out}"));
        if let Err(e) = appended {
            eprintln!("cannot append to {path}: {e}");
        }
    }
}
