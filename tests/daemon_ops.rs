//! The daemon as a supervisor drives it: `start --daemon` and its PID
//! file, `stop|status|reload|dump`, SIGUSR1/SIGUSR2/SIGTERM, the 6-phase
//! shutdown.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use harness::detached::{alive, wait_until, Detached};
use harness::run;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use skillctl::{KernelClient, Quiet, Target};

async fn client(daemon: &Detached) -> KernelClient {
    let mut client = KernelClient::connect(&daemon.info())
        .await
        .expect("connect");
    client
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("kernel ready");
    client
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn launched(daemon: &Detached) {
    let out = daemon.launch(&[]);
    assert!(
        out.status.success(),
        "launcher failed: {}\nlog: {}",
        stderr(&out),
        daemon.log()
    );
}

#[tokio::test]
async fn the_launcher_exits_once_the_detached_daemon_serves_and_its_pid_file_names_it() {
    let daemon = Detached::new();
    launched(&daemon);
    // Ready means ready: the connection file exists when the launcher exits.
    assert!(daemon.connection_file.exists());
    let pid = daemon.pid();
    assert!(alive(pid));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    let (ppid, sid): (i32, i32) = (fields[1].parse().unwrap(), fields[3].parse().unwrap());
    assert_ne!(
        ppid,
        std::process::id() as i32,
        "re-parented, not our child"
    );
    assert_ne!(
        sid,
        nix::unistd::getsid(None).unwrap().as_raw(),
        "in its own session"
    );
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, std::path::Path::new("/"));

    let mut c = client(&daemon).await;
    let outcome = run(&mut c, "!echo detached").await;
    assert_eq!(outcome.stream_text("stdout"), "detached\n");

    let status = daemon.manage("status");
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    assert!(stdout(&status).contains(&pid.to_string()));

    let stop = daemon.manage("stop");
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert!(!alive(pid), "stop returns once the daemon is gone");
    assert!(!daemon.pid_file.exists(), "PID file removed");
    assert!(!daemon.connection_file.exists(), "connection file removed");
    assert_eq!(daemon.manage("status").status.code(), Some(3));
}

#[test]
fn a_second_daemon_on_the_same_pid_file_is_refused_with_the_holder_named() {
    let daemon = Detached::new();
    launched(&daemon);
    let pid = daemon.pid();
    let second = daemon.launch(&[]);
    assert_eq!(second.status.code(), Some(1));
    let message = stderr(&second);
    assert!(
        message.contains("holds the PID file") && message.contains(&format!("pid {pid}")),
        "{message}"
    );
    assert_eq!(
        daemon.pid(),
        pid,
        "the running daemon's PID file is untouched"
    );
    assert!(alive(pid));
}

#[test]
fn a_stale_pid_file_is_replaced_and_a_failed_start_fails_the_launcher() {
    let daemon = Detached::new();
    std::fs::create_dir_all(daemon.pid_file.parent().unwrap()).unwrap();
    // A PID file left by a crash, naming a PID that is not a skillkernel.
    std::fs::write(&daemon.pid_file, "1\n").unwrap();
    assert_eq!(daemon.manage("status").status.code(), Some(1), "stale");
    launched(&daemon);
    assert_ne!(daemon.pid(), 1);
    assert!(daemon.manage("stop").status.success());

    // An unreadable connection file: the daemon fails after detaching and
    // the launcher reports why, non-zero.
    std::fs::write(&daemon.connection_file, "{not json").unwrap();
    let out = daemon.launch(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&daemon.connection_file.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(
        !daemon.pid_file.exists(),
        "a failed start leaves no PID file behind"
    );
}

#[tokio::test]
async fn sigusr1_applies_a_changed_config_in_the_same_process_and_keeps_out_a_broken_one() {
    let daemon = Detached::new();
    std::fs::write(&daemon.config_file, "[limits]\ncommand_timeout_secs = 60\n").unwrap();
    launched(&daemon);
    let pid = daemon.pid();
    let mut c = client(&daemon).await;

    std::fs::write(&daemon.config_file, "[limits]\ncommand_timeout_secs = 1\n").unwrap();
    let reload = daemon.manage("reload");
    assert!(reload.status.success(), "{}", stderr(&reload));
    assert!(
        daemon.wait_for_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("limits.command_timeout_secs"));
    let started = Instant::now();
    let outcome = run(&mut c, "!sleep 5").await;
    assert_eq!(outcome.status(), "error", "the new 1 s timeout killed it");
    assert!(started.elapsed() < Duration::from_secs(4));

    std::fs::write(
        &daemon.config_file,
        "[limits]\ncommand_timeout_secs = \"soon\"\n",
    )
    .unwrap();
    // `skillkernel reload` checks the files first and refuses to send…
    let reload = daemon.manage("reload");
    assert_eq!(reload.status.code(), Some(1));
    assert!(
        stderr(&reload).contains("command_timeout_secs"),
        "{}",
        stderr(&reload)
    );
    // …and the daemon, signalled anyway, keeps its running configuration.
    daemon.signal(Signal::SIGUSR1);
    assert!(
        daemon.wait_for_log("keeping the running configuration", Duration::from_secs(10)),
        "{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("config.toml"),
        "the error names the file"
    );
    assert_eq!(daemon.pid(), pid);
    assert!(alive(pid));
    let started = Instant::now();
    assert_eq!(run(&mut c, "!sleep 5").await.status(), "error");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 1 s timeout is still in force"
    );
}

#[tokio::test]
async fn sigusr2_writes_a_private_dump_without_the_key_and_a_storm_leaves_the_daemon_serving() {
    let daemon = Detached::new();
    std::fs::write(
        &daemon.config_file,
        "[models.ollama]\nhost = \"http://operator:hunter2@127.0.0.1:9\"\n",
    )
    .unwrap();
    launched(&daemon);
    let key = daemon.info().key;
    assert!(!key.is_empty());

    let out = daemon.manage("dump");
    assert!(out.status.success(), "{}", stderr(&out));
    let path = std::path::PathBuf::from(stdout(&out).trim());
    assert!(path.starts_with(daemon.state_dir.join("dumps")));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&key), "HMAC key leaked into the dump");
    assert!(
        !text.contains("hunter2"),
        "URL password leaked into the dump"
    );
    let dump: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dump["pid"], json!(daemon.pid()));
    assert_eq!(dump["version"], env!("CARGO_PKG_VERSION"));
    assert!(dump["uptime_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(dump["config"]["limits"]["command_timeout_secs"], 600);
    assert!(dump["kernel"]["operations"].is_array());

    // 100 SIGUSR2 within a second: coalesced, the daemon stays up.
    let pid = daemon.pid();
    for _ in 0..100 {
        daemon.signal(Signal::SIGUSR2);
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut c = client(&daemon).await;
    assert_eq!(run(&mut c, "!echo still here").await.status(), "ok");
    assert!(alive(pid));
    let dumps: Vec<_> = std::fs::read_dir(daemon.state_dir.join("dumps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(dumps.len() <= 20, "old dumps pruned: {}", dumps.len());
    for dump in dumps {
        let text = std::fs::read_to_string(&dump).unwrap();
        serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|e| panic!("{} is not a whole dump: {e}", dump.display()));
    }
}

#[tokio::test]
async fn sigterm_lets_the_running_cell_finish_refuses_new_work_and_logs_every_phase() {
    let daemon = Detached::new();
    launched(&daemon);
    let pid = daemon.pid();
    let mut c = client(&daemon).await;
    // Before the signal a sandbox_request is served …
    let sandbox_status = json!({"action": "status"});
    let before = c.message("sandbox_request", sandbox_status.clone());
    c.send(Target::Shell, &before).await.unwrap();
    let before = c
        .collect(&before.header.msg_id, Duration::from_secs(10), &mut Quiet)
        .await
        .expect("sandbox_reply");
    assert_eq!(before.status(), "ok", "{}", before.reply.content);
    let running = c.message(
        "execute_request",
        json!({"code": "!sleep 1; echo finished", "silent": false, "store_history": true,
               "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
    );
    c.send(Target::Shell, &running).await.unwrap();
    // Wait until the cell runs, then ask the daemon to stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = c.message(
        "execute_request",
        json!({"code": "!echo late", "silent": false, "store_history": true,
               "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
    );
    c.send(Target::Shell, &late).await.unwrap();
    // … and after it, like every request that does work, it is refused.
    let late_sandbox = c.message("sandbox_request", sandbox_status);
    c.send(Target::Shell, &late_sandbox).await.unwrap();

    let first = c
        .collect(&running.header.msg_id, Duration::from_secs(10), &mut Quiet)
        .await
        .expect("the running cell is answered");
    assert_eq!(first.status(), "ok", "it got its grace period");
    assert_eq!(first.stream_text("stdout"), "finished\n");
    let refused = c
        .collect(&late.header.msg_id, Duration::from_secs(10), &mut Quiet)
        .await
        .expect("the late cell is answered");
    assert_eq!(refused.status(), "error");
    assert_eq!(refused.reply.content["ename"], "KernelShuttingDown");
    let refused = c
        .collect(
            &late_sandbox.header.msg_id,
            Duration::from_secs(10),
            &mut Quiet,
        )
        .await
        .expect("the late sandbox_request is answered");
    assert_eq!(refused.reply.msg_type(), "sandbox_reply");
    assert_eq!(refused.reply.content["ename"], "KernelShuttingDown");

    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    let log = daemon.log();
    for phase in [
        "Initiated",
        "WaitingForOperations",
        "SavingState",
        "NotifyingClients",
        "Cleanup",
        "Complete",
    ] {
        assert!(log.contains(phase), "phase {phase} not logged:\n{log}");
    }
    assert!(!daemon.pid_file.exists());
    assert!(!daemon.connection_file.exists());
}

#[tokio::test]
async fn a_client_shutdown_request_is_answered_in_the_notifying_phase() {
    let daemon = Detached::new();
    launched(&daemon);
    let pid = daemon.pid();
    let mut c = client(&daemon).await;
    let reply = c
        .request(
            Target::Control,
            "shutdown_request",
            json!({"restart": false}),
            Duration::from_secs(10),
        )
        .await
        .expect("shutdown_reply");
    assert_eq!(reply.msg_type(), "shutdown_reply");
    assert_eq!(reply.content["status"], "ok");
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    assert!(daemon.log().contains("shutdown complete"));
}
