//! skillkernel and Jupyter Enterprise Gateway's launcher protocol:
//!
//! * `through_gateway.rs` — a real gateway launches the kernel through its
//!   distributed process proxy over SSH (harness::gateway) and a client of
//!   its REST and websocket API drives it: cells, a prompt on the default
//!   model, interrupt, restart, shutdown; the gateway killed under a
//!   running kernel; the same kernelspec under `gateway_provisioners` from
//!   jupyter_client's KernelManager.
//! * `launch.rs` — the launch as the kernel sees it, against a stand-in
//!   response address: failures before serving (each beside a launch that
//!   works), the communication port, the orphan timeout.
//! * `kubernetes.rs` — the Kubernetes launcher renders our pod template;
//!   the container, run as the image says, answers the gateway.

mod kubernetes;
mod launch;
mod through_gateway;

use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use harness::detached::wait_until;
use harness::gateway;
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The ports a kernel's log says it listens on: its five channels
/// (`skillkernel serving … shell=… hb=…`) and its communication port.
fn served_ports(kernel_log: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in kernel_log
        .lines()
        .filter(|l| l.contains("skillkernel serving") || l.contains("sent to Enterprise Gateway"))
    {
        for field in [
            "shell=",
            "iopub=",
            "stdin=",
            "control=",
            "hb=",
            "comm_port=",
        ] {
            if let Some(rest) = line.split(field).nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                ports.push(digits.parse().expect("a port number"));
            }
        }
    }
    ports
}

/// Both launches (the first and the restart) listened only inside the
/// port range — five channels and the communication port each — and no
/// kernel process is left after the shutdown.
fn assert_two_launches_in_range_and_none_left(kernel_log: &str, kernel_id: &str, context: &str) {
    let ports = served_ports(kernel_log);
    assert_eq!(
        ports.len(),
        12,
        "two launches × 6 ports: {ports:?}\n{context}"
    );
    for port in ports {
        assert!(
            (PORT_RANGE.0..=PORT_RANGE.1).contains(&port),
            "port {port} outside {}",
            port_range()
        );
    }
    assert!(
        wait_until(Duration::from_secs(15), || gateway::kernel_processes(
            kernel_id
        )
        .is_empty()),
        "kernel processes still alive: {:?}\n{context}",
        gateway::kernel_processes(kernel_id)
    );
}

/// What a kernel sent to the stand-in response address `listener`,
/// waiting at most 30 s; panics early, with its output, if `child` exits
/// first.
fn accept_payload(listener: &TcpListener, child: &mut Child, log: &Path) -> String {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                let mut payload = String::new();
                std::io::Read::read_to_string(&mut stream, &mut payload).unwrap();
                return payload;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        let log = || std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the kernel exited ({status}) before responding:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "no response within 30 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
