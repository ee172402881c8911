//! Session skill round trip: send a line to a sandboxed session process,
//! get its answer — through `Sessions::exchange`, the path `%%run` takes
//! for a session skill — against the same exchange with a bare,
//! unsandboxed child over pipes (the peer). Target: ≤ 2 ms per exchange.
//!
//! * `line` — `/bin/cat` with `reply: line` (one line in, one out): the
//!   kernel's own overhead;
//! * `marker` — `/bin/sh` with `reply: marker` (`echo {marker}` after the
//!   input), as a shell session runs.
//!
//! The helper is the `skillkernel` binary: `$SKILLKERNEL_BIN`, else
//! `target/release/skillkernel` (`scripts/bench-sandbox` builds it). Run
//! with `cargo bench -p skillkernel-sandbox --bench sandbox_session`; prints
//! p50/p95 and one JSON line (also appended to `$BENCH_JSON` when set).

mod common;

use common::{helper, publish, summary};
use std::process::Stdio;
use std::time::{Duration, Instant};

use skillkernel_sandbox::run::{OutputSink, Stream};
use skillkernel_sandbox::sessions::{Reply, SessionSpec};
use skillkernel_sandbox::{Sandbox, SandboxConfig, SandboxPolicy, SandboxSetup};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

const EXCHANGES: usize = 3_000;
const WARMUP: usize = 200;

struct Discard;

impl OutputSink for Discard {
    async fn output(&mut self, _stream: Stream, _text: &str) {}
    async fn flush(&mut self) {}
}

/// Round trips through a sandboxed session: `input` must answer `hello`.
async fn sandboxed(sandbox: &Sandbox, argv: &[&str], reply: Reply, input: &str) -> Vec<Duration> {
    let spec = SessionSpec {
        name: argv[0].to_owned(),
        skill: "bench@1.0.0".into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        policy: SandboxPolicy::for_workspace(sandbox.working_dir()),
        reply,
    };
    let cancel = CancellationToken::new();
    let mut samples = Vec::with_capacity(EXCHANGES);
    for i in 0..WARMUP + EXCHANGES {
        let started = Instant::now();
        let exchange = sandbox
            .exchange(&spec, input, &mut Discard, Duration::from_secs(10), &cancel)
            .await
            .expect("an exchange");
        let elapsed = started.elapsed();
        assert!(exchange.ended.is_none(), "the session ended: {exchange:?}");
        assert_eq!(exchange.text.trim(), "hello", "{exchange:?}");
        if i >= WARMUP {
            samples.push(elapsed);
        }
    }
    sandbox.sessions.end(argv[0]).await;
    samples
}

/// The same exchange with `/bin/cat` spawned directly, no sandbox.
async fn bare() -> Vec<Duration> {
    let mut child = tokio::process::Command::new("/bin/cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cat");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut samples = Vec::with_capacity(EXCHANGES);
    for i in 0..WARMUP + EXCHANGES {
        let started = Instant::now();
        stdin.write_all(b"hello\n").await.unwrap();
        stdin.flush().await.unwrap();
        line.clear();
        stdout.read_line(&mut line).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(line, "hello\n");
        if i >= WARMUP {
            samples.push(elapsed);
        }
    }
    samples
}

fn main() {
    let helper = helper();
    assert!(
        helper.exists(),
        "no helper at {}: build it with `cargo build --release -p skillkernel` or set SKILLKERNEL_BIN",
        helper.display()
    );
    let workspace = tempfile::tempdir().expect("workspace");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (line, marker, peer) = runtime.block_on(async {
        let sandbox = Sandbox::new(SandboxSetup {
            helper,
            state_dir: None,
            working_dir: workspace.path().to_path_buf(),
            kernel_files: Vec::new(),
            connection_folders: Vec::new(),
            config: SandboxConfig::default(),
        });
        let peer = summary(bare().await);
        let line = summary(sandboxed(&sandbox, &["/bin/cat"], Reply::Line, "hello").await);
        let marker =
            summary(sandboxed(&sandbox, &["/bin/sh"], Reply::default(), "echo hello").await);
        (line, marker, peer)
    });
    println!("session round trip, {EXCHANGES} exchanges (ms)");
    println!("{:<28} {:>8} {:>8}", "", "p50", "p95");
    println!(
        "{:<28} {:>8.3} {:>8.3}",
        "bare pipe to cat (peer)", peer.0, peer.1
    );
    println!(
        "{:<28} {:>8.3} {:>8.3}",
        "session, reply: line (cat)", line.0, line.1
    );
    println!(
        "{:<28} {:>8.3} {:>8.3}",
        "session, reply: marker (sh)", marker.0, marker.1
    );
    let ratio = |x: f64| ((x / peer.0) * 100.0).round() / 100.0;
    println!(
        "p50 over the peer: line ×{}, marker ×{}; target ≤ 2 ms",
        ratio(line.0),
        ratio(marker.0)
    );
    let out = serde_json::json!({
        "bench": "sandbox_session",
        "exchanges": EXCHANGES,
        "peer_ms": {"p50": peer.0, "p95": peer.1},
        "line_ms": {"p50": line.0, "p95": line.1},
        "marker_ms": {"p50": marker.0, "p95": marker.1},
    });
    publish(&out);
}
