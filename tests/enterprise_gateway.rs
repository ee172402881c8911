//! skillkernel launched by a real Jupyter Enterprise Gateway through its
//! distributed process proxy, over SSH (harness::gateway), and driven by a
//! client of the gateway's REST and websocket API: cells, a prompt on the
//! default model, interrupt, restart, shutdown. Also the launch's failure
//! modes, each beside a launch that works: a response address that
//! refuses, a port range too small, a wrong key, a gateway that vanishes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::gateway::{self, Gateway, Sshd};
use serde_json::{json, Value};

const PORT_RANGE: (u16, u16) = (42000, 43500);

fn port_range() -> String {
    format!("{}..{}", PORT_RANGE.0, PORT_RANGE.1)
}

/// The kernel's environment: the default model, private state and runtime.
fn kernel_env(dir: &Path, extra: Value) -> Value {
    let mut env = json!({
        "SKILLKERNEL_MODEL_DIR": harness::default_model_dir(),
        "SKILLKERNEL_STATE_DIR": dir.join("state"),
        "JUPYTER_RUNTIME_DIR": dir.join("kernel-runtime"),
        "SKILLKERNEL_MAX_TOKENS": "16",
    });
    if let (Some(env), Some(extra)) = (env.as_object_mut(), extra.as_object()) {
        env.extend(extra.clone());
    }
    env
}

fn drive(gateway: &Gateway, kernel_name: &str) -> Value {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/drive_gateway.py");
    let out = Command::new(gateway::python())
        .arg(driver)
        .args([&gateway.url(), kernel_name])
        .output()
        .expect("run the gateway client");
    assert!(
        out.status.success(),
        "the gateway client failed:\n{}\ngateway log (tail):\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&gateway.log_text(), 60)
    );
    serde_json::from_slice(&out.stdout).expect("the client's JSON report")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The ports a kernel's log says it serves on (`shell=…`, `iopub=…`) and
/// its communication port.
fn served_ports(kernel_log: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in kernel_log
        .lines()
        .filter(|l| l.contains("skillkernel serving") || l.contains("sent to Enterprise Gateway"))
    {
        for field in ["shell=", "iopub=", "comm_port="] {
            if let Some(rest) = line.split(field).nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                ports.push(digits.parse().expect("a port number"));
            }
        }
    }
    ports
}

#[test]
fn a_gateway_client_runs_cells_prompts_interrupts_restarts_and_shuts_down_skillkernel_over_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let kernels = dir.path().join("share/jupyter/kernels");
    gateway::distributed_kernelspec(
        &kernels,
        "skillkernel_distributed",
        kernel_env(dir.path(), json!({})),
    );
    let gateway = Gateway::start(dir.path(), &kernels.parent().unwrap(), &sshd, &port_range());

    let report = drive(&gateway, "skillkernel_distributed");
    let kernel_id = report["kernel_id"].as_str().unwrap().to_owned();
    let kernel_log = gateway.kernel_log(&kernel_id);
    let context = format!("report: {report:#}\nkernel log:\n{}", tail(&kernel_log, 40));

    assert_eq!(report["implementation"], "skillkernel", "{context}");
    assert_eq!(report["echo"]["status"], "ok", "{context}");
    assert_eq!(
        report["echo"]["text"], "cell through the gateway\n",
        "{context}"
    );
    // The default model answered through the gateway.
    assert_eq!(report["prompt"]["status"], "ok", "{context}");
    assert!(
        report["prompt"]["text"].as_str().unwrap().trim().len() > 3,
        "{context}"
    );
    // The gateway's interrupt came over the communication port as SIGINT.
    assert_eq!(
        report["interrupt"]["ename"], "KeyboardInterrupt",
        "{context}"
    );
    assert!(
        report["interrupt"]["secs"].as_f64().unwrap() < 10.0,
        "{context}"
    );
    assert!(
        gateway
            .log_text()
            .contains("Signal (2) sent via gateway communication port"),
        "{context}"
    );
    assert_eq!(
        report["after_interrupt"]["text"], "still serving\n",
        "{context}"
    );
    assert_eq!(
        report["after_restart"]["text"], "after restart\n",
        "{context}"
    );
    assert_eq!(report["shutdown_status"], 204, "{context}");
    assert_eq!(report["lookup_after_shutdown"], 404, "{context}");

    // Launched through SSH: once, then again for the restart.
    assert!(
        sshd.accepted_logins() >= 2,
        "sshd accepted {} logins",
        sshd.accepted_logins()
    );
    assert!(
        gateway
            .log_text()
            .contains(&format!("Kernel launched on '{}'", gateway::REMOTE_HOST)),
        "{context}"
    );
    // Every port both kernel processes listened on lies in the range.
    let ports = served_ports(&kernel_log);
    assert_eq!(
        ports.len(),
        6,
        "two launches × shell, iopub, comm: {ports:?}\n{context}"
    );
    for port in ports {
        assert!(
            (PORT_RANGE.0..=PORT_RANGE.1).contains(&port),
            "port {port} outside {}",
            port_range()
        );
    }
    // Nothing is left running after the shutdown.
    assert!(
        gateway::wait_until(Duration::from_secs(15), || gateway::kernel_processes(
            &kernel_id
        )
        .is_empty()),
        "kernel processes still alive: {:?}\n{context}",
        gateway::kernel_processes(&kernel_id)
    );
}

#[test]
fn a_kernel_whose_gateway_vanishes_shuts_down_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let kernels = dir.path().join("share/jupyter/kernels");
    let env = kernel_env(
        dir.path(),
        json!({"SKILLKERNEL_GATEWAY_ORPHAN_TIMEOUT": "8"}),
    );
    gateway::distributed_kernelspec(&kernels, "skillkernel_distributed", env);
    let mut gateway = Gateway::start(dir.path(), &kernels.parent().unwrap(), &sshd, &port_range());
    let started = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("{}/api/kernels", gateway.url()),
        ])
        .args([
            "-d",
            r#"{"name": "skillkernel_distributed", "env": {"KERNEL_USERNAME": "tester"}}"#,
        ])
        .output()
        .unwrap();
    let started: Value =
        serde_json::from_slice(&started.stdout).expect("the gateway's JSON answer");
    let kernel_id = started["id"].as_str().expect("a kernel id").to_owned();
    let alive = || !gateway::kernel_processes(&kernel_id).is_empty();
    // The control: with its gateway polling, the kernel outlives the
    // orphan timeout.
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        alive(),
        "the kernel died under a live gateway:\n{}",
        gateway.kernel_log(&kernel_id)
    );

    gateway.kill();
    assert!(
        gateway::wait_until(Duration::from_secs(30), || !alive()),
        "the kernel outlived its gateway:\n{}",
        gateway.kernel_log(&kernel_id)
    );
    let log = gateway.kernel_log(&kernel_id);
    assert!(log.contains("no word from Enterprise Gateway"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
}

/// Runs `skillkernel start` as a gateway would, with `args` after the
/// kernel id; returns its output once it exits (within 30 s).
fn launch(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(harness::bin("skillkernel"))
        .args([
            "start",
            "--kernel-id",
            "7d0c5f4e-0000-4000-8000-00000000beef",
        ])
        .args(args)
        .env("SKILLKERNEL_STATE_DIR", dir.join("state"))
        .env("JUPYTER_RUNTIME_DIR", dir.join("runtime"))
        .env("SKILLKERNEL_MODEL_DIR", harness::default_model_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = gateway::wait_until(Duration::from_secs(30), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        exited,
        "the launch did not exit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn runtime_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("runtime"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_launch_that_cannot_reach_its_gateway_or_is_misconfigured_fails_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let key = gateway::public_key();
    let closed = format!("127.0.0.1:{}", harness::free_port());

    let refused = launch(
        dir.path(),
        &["--response-address", &closed, "--public-key", &key],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&closed) && stderr.contains("the gateway is gone"),
        "{stderr}"
    );
    assert!(
        runtime_files(dir.path()).is_empty(),
        "left behind: {:?}",
        runtime_files(dir.path())
    );

    let small = launch(
        dir.path(),
        &[
            "--response-address",
            &closed,
            "--public-key",
            &key,
            "--port-range",
            "42000..42010",
        ],
    );
    let stderr = String::from_utf8_lossy(&small.stderr);
    assert_eq!(small.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("spans 10 ports") && stderr.contains("EG_MIN_PORT_RANGE_SIZE"),
        "{stderr}"
    );

    let wrong_key = launch(
        dir.path(),
        &[
            "--response-address",
            &closed,
            "--public-key",
            "bm90IGEga2V5",
        ],
    );
    let stderr = String::from_utf8_lossy(&wrong_key.stderr);
    assert_eq!(wrong_key.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not an RSA public key"), "{stderr}");

    // The control: the same launch with a listening response address
    // sends its connection information and serves until released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut child = Command::new(harness::bin("skillkernel"))
        .args([
            "start",
            "--kernel-id",
            "7d0c5f4e-0000-4000-8000-00000000beef",
        ])
        .args([
            "--response-address",
            &address,
            "--public-key",
            &key,
            "--port-range",
            "42000..43500",
        ])
        .env("SKILLKERNEL_STATE_DIR", dir.path().join("state"))
        .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut payload = String::new();
    std::io::Read::read_to_string(&mut stream, &mut payload).unwrap();
    assert!(!payload.is_empty());
    assert!(
        gateway::wait_until(Duration::from_secs(10), || !runtime_files(dir.path())
            .is_empty()),
        "no connection file for local tools"
    );
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "the launch exited after responding"
    );
    // The payload carries the communication port; the gateway would read
    // it there. Here the kernel says it in its log; SIGTERM ends it.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connection information sent to Enterprise Gateway"),
        "{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        runtime_files(dir.path()).is_empty(),
        "left behind: {:?}",
        runtime_files(dir.path())
    );
}

#[test]
fn the_communication_port_takes_signals_and_a_release_and_keeps_a_polled_kernel_alive() {
    let dir = tempfile::tempdir().unwrap();
    let key = gateway::public_key();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let log = dir.path().join("kernel.log");
    let mut child = Command::new(harness::bin("skillkernel"))
        .args([
            "start",
            "--kernel-id",
            "7d0c5f4e-0000-4000-8000-00000000c0de",
        ])
        .args(["--response-address", &address, "--public-key", &key])
        .args(["--gateway-orphan-timeout", "3"])
        .env("SKILLKERNEL_STATE_DIR", dir.path().join("state"))
        .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    std::io::Read::read_to_string(&mut stream, &mut String::new()).unwrap();
    let comm_port = {
        assert!(gateway::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("comm_port=")
        }));
        let text = std::fs::read_to_string(&log).unwrap();
        let digits: String = text
            .split("comm_port=")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u16>().unwrap()
    };
    let send = |request: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", comm_port)).unwrap();
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    };
    // Polled every half second for twice the orphan timeout, it lives; a
    // malformed request is logged and ignored.
    send("{not json");
    for _ in 0..12 {
        send(r#"{"signum": 0}"#);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // SIGUSR2 through the port: the daemon writes a state dump.
    send(r#"{"signum": 12}"#);
    assert!(
        gateway::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("state dump written")
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    send(r#"{"shutdown": 1}"#);
    assert!(gateway::wait_until(Duration::from_secs(15), || child
        .try_wait()
        .unwrap()
        .is_some()));
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "released, the kernel exits 0: {text}");
    assert!(text.contains("request ignored"), "{text}");
    assert!(text.contains("released the kernel"), "{text}");
}

#[test]
fn a_kernel_its_gateway_never_polls_exits_non_zero_after_the_orphan_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let key = gateway::public_key();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accept = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::io::Read::read_to_string(&mut stream, &mut String::new()).unwrap();
    });
    let out = launch(
        dir.path(),
        &[
            "--response-address",
            &address,
            "--public-key",
            &key,
            "--gateway-orphan-timeout",
            "2",
        ],
    );
    accept.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no word from Enterprise Gateway"),
        "{stderr}"
    );
    assert!(stderr.contains("shutdown complete"), "{stderr}");
    assert!(
        runtime_files(dir.path()).is_empty(),
        "left behind: {:?}",
        runtime_files(dir.path())
    );
}
