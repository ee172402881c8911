//! Starting, interrupting and stopping the daemon process.

use std::time::{Duration, Instant};

use harness::{free_port, run, Daemon, Launch};
use nix::sys::signal::Signal;
use serde_json::json;
use skillctl::Target;
use skillkernel_protocol::ConnectionInfo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_request_replies_notifies_iopub_and_exits_cleanly() {
    let mut daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let reply = client
        .request(
            Target::Control,
            "shutdown_request",
            json!({"restart": false}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(reply.content["restart"], false);
    let mut notified = false;
    while let Ok(m) = client.recv_iopub(Duration::from_secs(2)).await {
        if m.msg_type() == "shutdown_reply" {
            notified = true;
            break;
        }
    }
    assert!(notified, "shutdown_reply broadcast on IOPub");
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("daemon exits");
    assert!(status.success(), "{status}");
    assert!(
        !daemon.connection_file.exists(),
        "the file the daemon created is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_interrupts_the_cell_and_the_daemon_keeps_serving() {
    let mut daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let pid = daemon.pid();
    let signaller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT).unwrap();
    });
    let t = Instant::now();
    let outcome = run(&mut client, "!sleep 30").await;
    signaller.await.unwrap();
    assert_eq!(outcome.reply.content["ename"], "KeyboardInterrupt");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(daemon.is_running());
    assert_eq!(
        run(&mut client, "!echo ok").await.stream_text("stdout"),
        "ok\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_daemon_after_the_grace_period_and_kills_running_commands() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shutdown.toml");
    std::fs::write(&config, "[shutdown]\ngrace_secs = 0.5\n").unwrap();
    let connection_file = dir.path().join("kernel-test.json");
    // The cell writes its pid in the daemon's dir: its working directory,
    // where the sandbox lets `!commands` write.
    let mut daemon = Daemon::start_in_with(
        dir,
        connection_file,
        &["--config", config.to_str().unwrap()],
        Launch::in_own_dir(),
    );
    let client = daemon.client().await;
    let marker = daemon.dir.path().join("child.pid");
    let cell = client.message(
        "execute_request",
        json!({"code": format!("!echo $$ > {}; exec sleep 60", marker.display()),
               "silent": false, "store_history": true, "user_expressions": {},
               "allow_stdin": false, "stop_on_error": true}),
    );
    client.send(Target::Shell, &cell).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists()
        || std::fs::read_to_string(&marker)
            .unwrap_or_default()
            .trim()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "command did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let child: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    daemon.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("daemon exits on SIGTERM");
    assert!(
        signalled.elapsed() >= Duration::from_millis(500),
        "the running command got its grace period"
    );
    assert!(status.success(), "{status}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !is_alive(child),
        "the running command was killed at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jupyter_written_connection_file_is_used_as_is_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel-abc.json");
    let mut info = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
    info.shell_port = free_port();
    info.iopub_port = free_port();
    info.stdin_port = free_port();
    info.control_port = free_port();
    info.hb_port = free_port();
    info.extra
        .insert("jupyter_session".into(), json!("notebook.ipynb"));
    info.write(&path).unwrap();
    let mut daemon = Daemon::start_in(dir, path.clone(), &[]);
    assert_eq!(
        daemon.info, info,
        "the daemon does not rewrite Jupyter's file"
    );
    let mut client = daemon.client().await;
    assert_eq!(run(&mut client, "!echo hi").await.status(), "ok");
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(path.exists(), "Jupyter owns the file and removes it itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_fails_start_with_a_clear_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel-busy.json");
    let mut info = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
    info.shell_port = port;
    info.iopub_port = free_port();
    info.stdin_port = free_port();
    info.control_port = free_port();
    info.hb_port = free_port();
    info.write(&path).unwrap();
    let out = std::process::Command::new(harness::bin("skillkernel"))
        .args(["start", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on tcp://127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// Whether `pid` runs. A killed child orphaned by the daemon's exit may
/// linger as a zombie until init reaps it; a zombie does not count.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

#[test]
fn the_kernel_exits_when_the_jupyter_process_that_launched_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let conn = dir.path().join("kernel-orphan.json");
    let pid_file = dir.path().join("kernel.pid");
    // A short-lived "launcher" shell that starts the kernel, as Jupyter
    // does with JPY_PARENT_PID set, and then exits.
    let script = format!(
        "JPY_PARENT_PID=$$ {} start -f {} >/dev/null 2>&1 & echo $! > {}; sleep 1",
        harness::bin("skillkernel").display(),
        conn.display(),
        pid_file.display()
    );
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "kernel {pid} outlived its launcher"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !conn.exists(),
        "the orphaned kernel cleaned up its connection file"
    );
}
