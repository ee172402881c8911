//! The kernel path against the bare backend loop, in one run: how much a
//! prompt cell (execute_request → routing → generation → streamed
//! `update_display_data` on IOPub → reply and `idle`) costs over calling
//! the embedded backend directly with the same messages and options.
//!
//! ```sh
//! scripts/bench-kernel-path            # release build, then this example
//! cargo run --release -p skillctl --example kernel_path_bench -- \
//!     --model-dir ~/.cache/skillkernel/models --runs 7 --max-tokens 128
//! ```
//!
//! Both sides run greedy decoding, no repeat penalty, the daemon's default
//! system prompt, `--max-tokens` tokens at most, the same number of
//! inference threads; the daemon is the release `skillkernel` beside this
//! binary's target directory, started with its response cache off so every
//! cell really generates. Bare and kernel runs alternate, so drift on a
//! shared machine hits both. Each run's time is wall-clock from the request
//! to the end (the stream's `Done` for the bare loop; the reply and `idle`
//! for the cell), divided by the tokens generated. Prints one JSON object.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use skillctl::{ExecuteOptions, KernelClient, Quiet};
use skillkernel_protocol::ConnectionInfo;
use skillkernel_providers::candle::CandleProvider;
use skillkernel_providers::{ChatMessage, CompletionRequest, GenerationOptions, Provider};
use tokio_util::sync::CancellationToken;

const SYSTEM: &str = "You are a helpful assistant.";
const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle.";

/// The median of `xs` (sorted in place).
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

struct Args {
    model_dir: PathBuf,
    model: String,
    runs: usize,
    max_tokens: u32,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        model_dir: dirs_home().join(".cache/skillkernel/models"),
        model: "smollm2-135m".into(),
        runs: 5,
        max_tokens: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model-dir" => out.model_dir = PathBuf::from(value()?),
            "--model" => out.model = value()?,
            "--runs" => out.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--max-tokens" => {
                out.max_tokens = value()?.parse().map_err(|e| format!("--max-tokens: {e}"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(out)
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// `skillkernel` from the same target directory as this example.
fn daemon_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?;
    let path = dir.join("skillkernel");
    path.exists().then_some(path.clone()).ok_or(format!(
        "{} is missing: build the workspace first",
        path.display()
    ))
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(a: &Args, dir: &Path) -> Result<(Daemon, ConnectionInfo), String> {
    let config = dir.join("bench.toml");
    std::fs::write(&config, "[models.cache]\nenabled = false\n").map_err(|e| e.to_string())?;
    let conn = dir.join("kernel-bench.json");
    let child = Command::new(daemon_binary()?)
        .arg("start")
        .arg("-f")
        .arg(&conn)
        .arg("--config")
        .arg(&config)
        .arg("--model-dir")
        .arg(&a.model_dir)
        .args(["--model", &a.model, "--system-prompt", SYSTEM])
        .args([
            "--max-tokens",
            &a.max_tokens.to_string(),
            "--repeat-penalty",
            "1.0",
        ])
        .env("SKILLKERNEL_LOG", "warn")
        .env("SKILLKERNEL_SYSTEM_CONFIG", "")
        .env("XDG_CONFIG_HOME", dir)
        .env("SKILLKERNEL_STATE_DIR", dir.join("state"))
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start skillkernel: {e}"))?;
    let daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(info) = ConnectionInfo::read(&conn) {
            return Ok((daemon, info));
        }
        if Instant::now() > deadline {
            return Err("skillkernel did not write its connection file".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One bare generation: seconds and tokens.
async fn bare(p: &CandleProvider, a: &Args) -> Result<(f64, u32), String> {
    let request = CompletionRequest {
        model: a.model.clone(),
        messages: vec![
            ChatMessage::new("system", SYSTEM),
            ChatMessage::new("user", PROMPT),
        ],
        options: GenerationOptions {
            max_tokens: a.max_tokens,
            temperature: 0.0,
            repeat_penalty: None,
            ..GenerationOptions::default()
        },
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    };
    let started = Instant::now();
    let done = p
        .complete(request, CancellationToken::new())
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        started.elapsed().as_secs_f64(),
        done.stats.completion_tokens,
    ))
}

/// One prompt cell: seconds to reply + idle, tokens, and IOPub messages.
async fn cell(client: &mut KernelClient) -> Result<(f64, u32, usize), String> {
    let options = ExecuteOptions {
        timeout: Duration::from_secs(300),
        ..ExecuteOptions::default()
    };
    let started = Instant::now();
    let outcome = client
        .execute(&format!("%%prompt\n{PROMPT}"), &options, &mut Quiet)
        .await
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    if outcome.status() != "ok" {
        return Err(format!("the cell failed: {}", outcome.reply.content));
    }
    let tokens = outcome.reply.metadata["model"]["completion_tokens"]
        .as_u64()
        .unwrap_or(0) as u32;
    Ok((seconds, tokens, outcome.iopub.len()))
}

async fn bench(a: Args) -> Result<serde_json::Value, String> {
    let dir = std::env::temp_dir().join(format!("skillkernel-path-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let provider = CandleProvider::new(&a.model_dir).map_err(|e| e.to_string())?;
    let (_daemon, info) = start_daemon(&a, &dir)?;
    let mut client = KernelClient::connect(&info)
        .await
        .map_err(|e| e.to_string())?;
    client
        .wait_ready(Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    // Warm-up: both load the model and fill their caches once.
    bare(&provider, &a).await?;
    cell(&mut client).await?;
    let (mut bare_spt, mut kernel_spt) = (Vec::new(), Vec::new());
    let (mut tokens, mut messages) = (Vec::new(), Vec::new());
    for run in 0..a.runs {
        let (bs, bt) = bare(&provider, &a).await?;
        let (ks, kt, n) = cell(&mut client).await?;
        if bt != kt {
            return Err(format!(
                "run {run}: bare loop made {bt} tokens, the cell {kt}"
            ));
        }
        eprintln!("run {run}: bare {bs:.3} s, cell {ks:.3} s, {bt} tokens, {n} IOPub messages");
        bare_spt.push(bs / bt.max(1) as f64);
        kernel_spt.push(ks / kt.max(1) as f64);
        tokens.push(bt);
        messages.push(n);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let b = median(&mut bare_spt);
    let k = median(&mut kernel_spt);
    Ok(json!({
        "runs": a.runs,
        "tokens_per_run": tokens,
        "iopub_messages_per_cell": messages,
        "bare_ms_per_token": b * 1e3,
        "kernel_ms_per_token": k * 1e3,
        "bare_tokens_per_second": 1.0 / b,
        "kernel_tokens_per_second": 1.0 / k,
        "kernel_overhead_percent": (k / b - 1.0) * 100.0,
        "target_percent": 5.0,
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let result = match args() {
        Ok(a) => bench(a).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kernel_path_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
