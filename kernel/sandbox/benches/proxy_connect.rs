//! Network by host: what the proxy adds to a connection's set-up to an
//! allowed host. Target: ≤ 2 ms.
//!
//! A sandboxed Python program times, per connection, connect → send an
//! HTTP request → the first byte of the answer from a local server:
//!
//! * `direct` (the peer) — granted the whole network (`network: true`),
//!   straight to the server;
//! * `proxied` — granted the server's host only: through the run's
//!   network namespace, the helper's bridge and the daemon's proxy
//!   (`CONNECT`, then the same request).
//!
//! Both in one run, through `Sandbox::run` as a cell runs. The helper is
//! the `skillkernel` binary (`$SKILLKERNEL_BIN`, else
//! `target/release/skillkernel`). Run with `cargo bench -p
//! skillkernel-sandbox --bench proxy_connect`; prints p50/p95 and one JSON
//! line (also appended to `$BENCH_JSON` when set).

mod common;

use std::time::Duration;

use common::{helper, publish, summary};
use skillkernel_sandbox::audit::Subject;
use skillkernel_sandbox::proxy::{HostPattern, NetworkGrant};
use skillkernel_sandbox::run::{OutputSink, Stream};
use skillkernel_sandbox::verdict::Verdict;
use skillkernel_sandbox::{Sandbox, SandboxConfig, SandboxSetup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const CONNECTIONS: usize = 400;
const WARMUP: usize = 40;

const CLIENT: &str = r#"
import socket, sys, time
mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
request = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
for _ in range(n):
    start = time.perf_counter()
    if mode == "direct":
        s = socket.create_connection(("127.0.0.1", port))
    else:
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % port)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1024)
        assert head.startswith(b"HTTP/1.1 200"), head
    s.sendall(request)
    assert s.recv(1)
    print(int((time.perf_counter() - start) * 1e6))
    s.close()
"#;

#[derive(Default)]
struct Collect(String);

impl OutputSink for Collect {
    async fn output(&mut self, stream: Stream, text: &str) {
        match stream {
            Stream::Stdout => self.0.push_str(text),
            Stream::Stderr => eprint!("{text}"),
        }
    }
    async fn flush(&mut self) {}
}

/// A server answering every request with a short response.
async fn server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    port
}

async fn timed(network: NetworkGrant, mode: &str, port: u16) -> Vec<Duration> {
    let workspace = tempfile::tempdir().expect("workspace");
    let sandbox = Sandbox::new(SandboxSetup {
        helper: helper(),
        state_dir: None,
        working_dir: workspace.path().to_path_buf(),
        kernel_files: Vec::new(),
        connection_folders: Vec::new(),
        config: SandboxConfig {
            network,
            ..SandboxConfig::default()
        },
    });
    let policy = sandbox.cell_policy().expect("a policy");
    let n = (WARMUP + CONNECTIONS).to_string();
    let argv = [
        "/usr/bin/python3",
        "-c",
        CLIENT,
        mode,
        &port.to_string(),
        &n,
    ]
    .map(String::from);
    let mut out = Collect::default();
    let verdict = sandbox
        .run(
            &Subject::cell(),
            &policy,
            &argv,
            None,
            &mut out,
            Duration::from_secs(120),
            &CancellationToken::new(),
        )
        .await
        .expect("the run");
    assert_eq!(verdict, Verdict::Success, "{mode}: {}", out.0);
    out.0
        .lines()
        .skip(WARMUP)
        .map(|l| Duration::from_micros(l.trim().parse().expect("microseconds")))
        .collect()
}

fn main() {
    assert!(
        helper().exists(),
        "no helper at {}: build it with `cargo build --release -p skillkernel` or set SKILLKERNEL_BIN",
        helper().display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (direct, proxied) = runtime.block_on(async {
        let port = server().await;
        let host = HostPattern::parse(&format!("127.0.0.1:{port}")).expect("a host");
        let direct = summary(timed(NetworkGrant::Everything, "direct", port).await);
        let proxied = summary(timed(NetworkGrant::Hosts(vec![host]), "proxied", port).await);
        (direct, proxied)
    });
    println!("connection set-up to the first byte, {CONNECTIONS} connections (ms)");
    println!("{:<34} {:>8} {:>8}", "", "p50", "p95");
    println!(
        "{:<34} {:>8.3} {:>8.3}",
        "direct, network: true (peer)", direct.0, direct.1
    );
    println!(
        "{:<34} {:>8.3} {:>8.3}",
        "through the proxy, by host", proxied.0, proxied.1
    );
    let added = ((proxied.0 - direct.0) * 1000.0).round() / 1000.0;
    println!("the proxy adds {added} ms at p50; target ≤ 2 ms");
    publish(&serde_json::json!({
        "bench": "proxy_connect",
        "connections": CONNECTIONS,
        "direct_ms": {"p50": direct.0, "p95": direct.1},
        "proxied_ms": {"p50": proxied.0, "p95": proxied.1},
        "added_p50_ms": added,
    }));
}
