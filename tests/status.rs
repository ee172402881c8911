//! The status report through the real daemon — `skillctl status`,
//! `status_request` on control, `%status` — and `skillctl interrupt` /
//! `skillctl shutdown`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use harness::{bin, free_port, run, Daemon, Launch};
use serde_json::{json, Value};
use skillctl::Target;
use skillkernel_protocol::ConnectionInfo;

/// Host-wide checks off: a loaded CI machine (high load, little free
/// memory) must not make a test that is about the kernel itself fail.
const HOST_CHECKS_OFF: &str = "available_memory_degraded_percent = 0\n\
                               available_memory_unhealthy_percent = 0\n\
                               load_degraded_per_core = 0\n\
                               state_free_degraded_mib = 0\n\
                               state_free_unhealthy_mib = 0\n";

/// Starts a daemon with a `[health]` section (host checks off) plus `extra`.
fn daemon_with_health(extra: &str) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("health.toml");
    std::fs::write(&config, format!("[health]\n{HOST_CHECKS_OFF}{extra}")).expect("config");
    let connection_file = dir.path().join("kernel-test.json");
    let config = config.display().to_string();
    // In its own dir: the cells below write a marker there.
    Daemon::start_in_with(
        dir,
        connection_file,
        &["--config", &config],
        Launch::in_own_dir(),
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skillctl status` says healthy and exits 0.
fn assert_healthy(daemon: &Daemon) {
    let (code, v) = status_json(daemon);
    assert_eq!(
        (code, &v["health"]["status"]),
        (Some(0), &json!("healthy")),
        "{v:#}"
    );
}

fn status_json(daemon: &Daemon) -> (Option<i32>, Value) {
    let out = daemon.skillctl(&["status", "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}): {}\nstderr: {}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

#[test]
fn skillctl_status_json_reports_this_daemon_healthy_with_its_rss() {
    let daemon = daemon_with_health("");
    let (code, v) = status_json(&daemon);
    assert_eq!(v["status"], "ok", "{v:#}");
    assert_eq!(v["kernel"]["pid"], daemon.pid(), "{v:#}");
    assert_eq!(v["kernel"]["name"], "skillkernel");
    assert!(v["kernel"]["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["health"]["status"], "healthy", "{v:#}");
    assert_eq!(v["health"]["reasons"], json!([]));
    assert!(v["health"]["rss_bytes"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["health"]["system_memory_total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["health"]["load_average"].as_array().unwrap().len(), 3);
    assert_eq!(v["session"]["execution_count"], 0);
    assert_eq!(code, Some(0), "healthy exits 0");
}

#[test]
fn skillctl_status_prints_health_first_then_kernel_and_session() {
    let daemon = daemon_with_health("");
    let out = daemon.skillctl(&["status"]);
    let text = stdout(&out);
    assert!(text.starts_with("health: healthy\n"), "{text}");
    assert!(text.contains("  rss: "), "{text}");
    assert!(
        text.contains(&format!(
            "kernel: skillkernel {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("  pid: {}\n", daemon.pid())),
        "{text}"
    );
    assert!(text.contains("session:\n  execution count: 0\n"), "{text}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_one_mib_rss_threshold_makes_the_daemon_degraded_with_the_rss_reason_and_exit_1() {
    let daemon = daemon_with_health("rss_degraded_mib = 1\n");
    let (code, v) = status_json(&daemon);
    assert_eq!(v["health"]["status"], "degraded", "{v:#}");
    let reasons = v["health"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{v:#}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.starts_with("rss ") && reason.ends_with(" > 1 MiB"),
        "{reason}"
    );
    assert_eq!(v["health"]["thresholds"]["rss_degraded_mib"], 1);
    assert_eq!(code, Some(1), "degraded exits 1");
    let text = stdout(&daemon.skillctl(&["status"]));
    assert!(
        text.starts_with(&format!("health: degraded\n  reason: {reason}\n")),
        "{text}"
    );
}

/// Health sees failures, not only memory and load: a run of failing
/// cells makes the daemon degraded with the share as the reason, and
/// cells that work bring it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_cells_make_the_daemon_degraded_until_cells_work_again() {
    let daemon = daemon_with_health("");
    let mut client = daemon.client().await;
    assert_healthy(&daemon);
    for _ in 0..20 {
        assert_eq!(run(&mut client, "%no_such_magic").await.status(), "error");
    }
    let (code, v) = status_json(&daemon);
    assert_eq!(v["health"]["status"], "degraded", "{v:#}");
    assert_eq!(
        v["health"]["reasons"],
        json!(["20 of the last 20 runs failed (100% > 50%)"])
    );
    assert_eq!(v["health"]["service"]["recent_failures"], 20);
    assert_eq!(code, Some(1));
    // 20 failed of 50: well under half.
    for _ in 0..30 {
        assert_eq!(run(&mut client, "%set x = 1").await.status(), "ok");
    }
    assert_healthy(&daemon);
}

/// A backend whose only host refuses connections makes the daemon
/// degraded, naming it, once prompts have found it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_makes_the_daemon_degraded_and_is_named() {
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    let daemon = daemon_with_health(&format!(
        "[models]\ndefault = \"m@gpu\"\n\
         [models.backends.gpu]\nkind = \"openai\"\nurl = \"{url}\"\n\
         models = [\"m\"]\ndiscover = false\n"
    ));
    let mut client = daemon.client().await;
    // Positive control: nothing has tried the backend yet.
    assert_healthy(&daemon);
    // The last request to its only host failed: unreachable until one
    // succeeds, however long the status takes to ask.
    for _ in 0..3 {
        assert_eq!(run(&mut client, "Say hello").await.status(), "error");
    }
    let (code, v) = status_json(&daemon);
    assert_eq!(v["health"]["status"], "degraded", "{v:#}");
    let reason = v["health"]["reasons"][0].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("unreachable: gpu (") && reason.contains(&url),
        "{reason}"
    );
    assert_eq!(
        v["health"]["service"]["unreachable_backends"][0]
            .as_str()
            .map(|s| s.starts_with("gpu")),
        Some(true)
    );
    assert_eq!(code, Some(1));
}

#[test]
fn a_one_mib_unhealthy_threshold_makes_skillctl_status_exit_2() {
    let daemon = daemon_with_health("rss_unhealthy_mib = 1\n");
    let (code, v) = status_json(&daemon);
    assert_eq!(v["health"]["status"], "unhealthy", "{v:#}");
    assert_eq!(code, Some(2), "unhealthy exits 2");
}

#[test]
fn skillctl_status_exits_3_when_no_kernel_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut info = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
    info.shell_port = free_port();
    info.control_port = free_port();
    info.stdin_port = free_port();
    info.iopub_port = free_port();
    info.hb_port = free_port();
    let file: PathBuf = dir.path().join("kernel-gone.json");
    info.write(&file).unwrap();
    let t = Instant::now();
    let out = Command::new(bin("skillctl"))
        .args(["--existing"])
        .arg(&file)
        .args(["--connect-timeout", "1", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let missing = Command::new(bin("skillctl"))
        .args(["--existing", "/nonexistent/kernel.json", "status"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_request_is_answered_on_control_while_a_cell_runs_and_on_shell() {
    let daemon = daemon_with_health("");
    let mut client = daemon.client().await;
    let shell = client
        .request(
            Target::Shell,
            "status_request",
            json!({}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(shell.msg_type(), "status_reply");
    assert_eq!(shell.content["status"], "ok");
    assert_eq!(shell.content["kernel"]["pid"], daemon.pid());

    let marker = daemon.dir.path().join("started");
    let cell = client.message(
        "execute_request",
        json!({"code": format!("!touch {}; sleep 30", marker.display()),
               "silent": false, "store_history": true, "user_expressions": {},
               "allow_stdin": false, "stop_on_error": true}),
    );
    client.send(Target::Shell, &cell).await.unwrap();
    wait_for(&marker).await;
    let t = Instant::now();
    let control = client
        .request(
            Target::Control,
            "status_request",
            json!({}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "answered beside the running cell"
    );
    assert_eq!(control.content["status"], "ok");
    assert_eq!(control.content["session"]["execution_count"], 1);
    assert_eq!(control.content["health"]["status"], "healthy");
    client
        .request(
            Target::Control,
            "interrupt_request",
            json!({}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_status_shows_the_health_rows() {
    let daemon = daemon_with_health("rss_degraded_mib = 1\n");
    let mut client = daemon.client().await;
    let outcome = run(&mut client, "%status").await;
    assert_eq!(outcome.status(), "ok");
    let display = outcome
        .of_type("display_data")
        .next()
        .expect("a status table");
    let table = display.content["data"]["text/markdown"].as_str().unwrap();
    for row in [
        "| health | degraded: rss ",
        "| RSS | ",
        "| CPU | ",
        "| system memory | ",
        "| load average | ",
        "| system uptime | ",
        "| kernel | skillkernel ",
        "| execution count | ",
    ] {
        assert!(table.contains(row), "{row:?} missing from:\n{table}");
    }
}

async fn wait_for(marker: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the command did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skillctl_interrupt_stops_a_running_sleep_cell() {
    let daemon = Daemon::start_with(Launch::in_own_dir(), &[]);
    let mut client = daemon.client().await;
    let marker = daemon.dir.path().join("started");
    let connection_file = daemon.connection_file.clone();
    let marker_seen = marker.clone();
    let interrupter = tokio::spawn(async move {
        wait_for(&marker_seen).await;
        tokio::task::spawn_blocking(move || {
            Command::new(bin("skillctl"))
                .arg("--existing")
                .arg(&connection_file)
                .arg("interrupt")
                .output()
                .expect("run skillctl")
        })
        .await
        .unwrap()
    });
    let t = Instant::now();
    let outcome = run(
        &mut client,
        &format!("!touch {}; sleep 30", marker.display()),
    )
    .await;
    let out = interrupter.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "interrupt_reply: ok\n");
    assert_eq!(outcome.reply.content["ename"], "KeyboardInterrupt");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(
        run(&mut client, "!echo still here")
            .await
            .stream_text("stdout"),
        "still here\n"
    );
}

#[test]
fn skillctl_shutdown_makes_the_daemon_exit_0_and_remove_its_connection_file() {
    let mut daemon = Daemon::start(&[]);
    let out = daemon.skillctl(&["shutdown"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", daemon.log());
    assert_eq!(stdout(&out), "shutdown_reply: ok (restart: false)\n");
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("the daemon exits after skillctl shutdown");
    assert!(status.success(), "{status}");
    assert!(!daemon.connection_file.exists(), "connection file removed");
}

#[test]
fn skillctl_shutdown_restart_echoes_restart_in_the_reply() {
    let mut daemon = Daemon::start(&[]);
    let out = daemon.skillctl(&["shutdown", "--restart", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", daemon.log());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["restart"], true);
    assert!(daemon.wait_exit(Duration::from_secs(10)).is_some());
}
