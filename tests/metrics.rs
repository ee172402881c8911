//! The Prometheus endpoint of a real daemon, checked by the real tools:
//! `promtool check metrics` on what it serves, and a real Prometheus
//! (Debian's `prometheus` package; `scripts/test` installs it) scraping
//! it with a bearer token and answering queries over what it scraped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{run, Daemon};

const TOKEN: &str = "s3cret-scrape-token";

/// A daemon with `[metrics]` on a free loopback port, the embedded
/// default model, and the address its log names.
fn daemon_with_metrics(dir: &Path) -> (Daemon, SocketAddr) {
    let config = dir.join("metrics.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\nbearer_token = \"{TOKEN}\"\n\
             # Trace export to where nothing listens: its counters join the page.\n\
             [tracing]\notlp_endpoint = \"http://127.0.0.1:{}\"\n",
            free_port()
        ),
    )
    .expect("config");
    let model_dir = harness::default_model_dir();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--model-dir",
        &model_dir,
        "--max-tokens",
        "8",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let log = daemon.log();
        if let Some(addr) = log
            .split("metrics endpoint listening on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
        {
            break addr.parse().expect("an address in the log");
        }
        assert!(
            Instant::now() < deadline,
            "no metrics endpoint in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (daemon, addr)
}

/// `GET path` with `headers`: the status code and the body.
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    try_get(addr, path, headers)
        .expect("an answer in time")
        .expect("an HTTP response")
}

/// As [`get`]: `Ok(None)` when the endpoint closes the connection
/// without a response, `Err` when it does not answer in 10 s.
fn try_get(addr: SocketAddr, path: &str, headers: &str) -> Result<Option<(u16, String)>, String> {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return Ok(None);
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return Ok(None);
    }
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(format!("no answer in 10 s: {e}"))
        }
        Err(_) => return Ok(None),
    }
    let response = String::from_utf8_lossy(&response);
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return Ok(None);
    };
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    Ok(status.map(|status| (status, body.to_owned())))
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(
        addr,
        "/metrics",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `line_start` (name and labels as written).
fn value(page: &str, line_start: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn tool(name: &str) -> &'static str {
    let path = match name {
        "promtool" => "/usr/bin/promtool",
        _ => "/usr/bin/prometheus",
    };
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's `prometheus` package (scripts/test does)"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_counts_requests_cells_and_model_calls_and_promtool_accepts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, addr) = daemon_with_metrics(dir.path());
    let mut client = daemon.client().await;
    assert_eq!(run(&mut client, "%set x = 1").await.status(), "ok");
    assert_eq!(run(&mut client, "%no_such_magic").await.status(), "error");
    assert_eq!(run(&mut client, "!echo hi").await.status(), "ok");
    assert_eq!(run(&mut client, "Say hello.").await.status(), "ok");

    // Without the token, or elsewhere than /metrics: refused.
    assert_eq!(get(addr, "/metrics", "").0, 401);
    assert_eq!(
        get(addr, "/metrics", "Authorization: Bearer wrong\r\n").0,
        401
    );
    assert_eq!(
        get(addr, "/", &format!("Authorization: Bearer {TOKEN}\r\n")).0,
        404
    );

    let page = scrape(addr);
    let cells = |kind: &str, outcome: &str| {
        value(
            &page,
            &format!("skillkernel_cells_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(cells("lines", "ok"), Some(2.0), "{page}");
    assert_eq!(cells("lines", "error"), Some(1.0));
    assert_eq!(cells("prompt", "ok"), Some(1.0));
    let executes = value(
        &page,
        "skillkernel_requests_total{msg_type=\"execute_request\"}",
    );
    assert_eq!(executes, Some(4.0));
    assert!(page.contains(
        "skillkernel_request_duration_seconds_bucket{msg_type=\"execute_request\",le=\"+Inf\"} 4"
    ));
    let model = "backend=\"candle\",model=\"smollm2-135m-instruct.q4_1\"";
    assert_eq!(
        value(
            &page,
            &format!("skillkernel_model_calls_total{{{model},outcome=\"ok\"}}")
        ),
        Some(1.0),
        "{page}"
    );
    let completion = value(
        &page,
        &format!("skillkernel_model_tokens_total{{{model},kind=\"completion\"}}"),
    );
    assert!(completion.is_some_and(|n| n > 0.0), "{page}");
    assert_eq!(
        value(&page, "skillkernel_sandbox_runs_total{ending=\"success\"}"),
        Some(1.0)
    );
    // One status is current (which one depends on the machine's load).
    let current: f64 = ["healthy", "degraded", "unhealthy"]
        .iter()
        .filter_map(|s| {
            value(
                &page,
                &format!("skillkernel_health_status{{status=\"{s}\"}}"),
            )
        })
        .sum();
    assert_eq!(current, 1.0, "{page}");
    assert!(
        value(
            &page,
            "skillkernel_telemetry_dropped_total{outlet=\"traces\"}"
        )
        .is_some(),
        "{page}"
    );

    let mut promtool = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// Prometheus, killed with the test.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The first value of an instant query, once it has one.
fn query(prometheus: SocketAddr, expr: &str) -> Option<f64> {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = get(prometheus, &format!("/api/v1/query?query={encoded}"), "");
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_endpoint_with_its_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, addr) = daemon_with_metrics(dir.path());
    let mut client = daemon.client().await;
    for _ in 0..3 {
        assert_eq!(run(&mut client, "%set x = 1").await.status(), "ok");
    }
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: skillkernel\n    \
             authorization:\n      credentials: {TOKEN}\n    static_configs:\n      \
             - targets: ['{addr}']\n"
        ),
    )
    .expect("prometheus.yml");
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _prometheus = Prometheus(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
            .spawn()
            .expect("prometheus"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let scraped = loop {
        let cells = std::net::TcpStream::connect(web)
            .ok()
            .and_then(|_| query(web, r#"skillkernel_cells_total{kind="lines",outcome="ok"}"#));
        if let Some(cells) = cells {
            break cells;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had the series; its log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(scraped, 3.0);
    assert_eq!(query(web, r#"up{job="skillkernel"}"#), Some(1.0));
    // The positive control's counterpart: what the scrape saw is what
    // the daemon counts now.
    let page = scrape(addr);
    assert_eq!(
        value(
            &page,
            "skillkernel_cells_total{kind=\"lines\",outcome=\"ok\"}"
        ),
        Some(3.0)
    );
}

/// A thousand scrapes in a few seconds from forty threads at once, more
/// than the endpoint's 32 slots: cells are answered all the while, every
/// scrape gets a page or a closed connection in time (never a hang), and
/// a scrape afterwards works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_flood_does_not_hold_up_cells() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, addr) = daemon_with_metrics(dir.path());
    let mut client = daemon.client().await;
    let start = std::sync::Arc::new(std::sync::Barrier::new(40));
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                let auth = format!("Authorization: Bearer {TOKEN}\r\n");
                start.wait();
                (0..25)
                    .map(|_| try_get(addr, "/metrics", &auth).map(|r| r.map(|(status, _)| status)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let started = Instant::now();
    for i in 0..20 {
        let out = tokio::time::timeout(Duration::from_secs(20), run(&mut client, "%set x = 1"))
            .await
            .unwrap_or_else(|_| panic!("cell {i} not answered during the flood"));
        assert_eq!(out.status(), "ok");
    }
    eprintln!("20 cells during the flood in {:?}", started.elapsed());
    let answers: Vec<Result<Option<u16>, String>> = flood
        .into_iter()
        .flat_map(|t| t.join().expect("scraper"))
        .collect();
    assert_eq!(answers.len(), 1000);
    let served = answers.iter().filter(|a| **a == Ok(Some(200))).count();
    let closed = answers.iter().filter(|a| **a == Ok(None)).count();
    assert_eq!(
        served + closed,
        1000,
        "only pages or closed connections, in time: {:?}",
        answers
            .iter()
            .find(|a| !matches!(a, Ok(Some(200)) | Ok(None)))
    );
    assert!(served >= 100, "{served} of 1000 scrapes served");
    eprintln!("{served} of 1000 scrapes served, {closed} closed");
    let page = scrape(addr);
    assert!(page.contains("skillkernel_cells_total"));
}
