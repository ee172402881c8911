//! The launch as the kernel sees it, against a stand-in response address
//! (a plain TCP listener: the real gateway's decryption is proven in
//! `through_gateway.rs`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use harness::detached::wait_until;
use harness::gateway;

use crate::accept_payload;

const KERNEL_ID: &str = "7d0c5f4e-0000-4000-8000-00000000beef";

/// `skillkernel start` as a gateway runs it, with private state and
/// runtime folders under `dir`.
fn kernel_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(harness::bin("skillkernel"));
    command
        .args(["start", "--kernel-id", KERNEL_ID])
        .args(args)
        .env("SKILLKERNEL_STATE_DIR", dir.join("state"))
        .env("JUPYTER_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Runs a launch expected to fail; returns its output once it exits
/// (within 30 s).
fn failed_launch(dir: &Path, args: &[&str]) -> Output {
    let mut child = kernel_command(dir, args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(30), || {
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

/// A kernel launched against a stand-in gateway that has received its
/// connection information; its log is a file, its communication port read
/// from the log.
struct Launched {
    child: Child,
    log: PathBuf,
    comm_port: u16,
}

impl Launched {
    fn start(dir: &Path, key: &str, args: &[&str]) -> Launched {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let log = dir.join("kernel.log");
        let mut child = kernel_command(dir, &["--response-address", &address, "--public-key", key])
            .args(args)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let payload = accept_payload(&listener, &mut child, &log);
        assert!(!payload.is_empty());
        let mut launched = Launched {
            child,
            log,
            comm_port: 0,
        };
        assert!(
            wait_until(Duration::from_secs(10), || launched
                .log_text()
                .contains("comm_port=")),
            "{}",
            launched.log_text()
        );
        let text = launched.log_text();
        let digits: String = text
            .split("comm_port=")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        launched.comm_port = digits.parse().unwrap();
        launched
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request on the communication port, as the gateway sends it.
    fn send(&self, request: &str) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.comm_port)).unwrap();
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The exit status, waiting at most `secs`.
    fn exit_within(&mut self, secs: u64) -> ExitStatus {
        let exited = wait_until(Duration::from_secs(secs), || !self.running());
        if !exited {
            let _ = self.child.kill();
        }
        assert!(exited, "still running after {secs} s:\n{}", self.log_text());
        self.child.wait().unwrap()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_launch_that_cannot_reach_its_gateway_or_is_misconfigured_fails_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let key = gateway::public_key();
    // Port 1 on loopback: nothing listens there.
    let closed = "127.0.0.1:1";

    let refused = failed_launch(
        dir.path(),
        &["--response-address", closed, "--public-key", &key],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(closed) && stderr.contains("the gateway is gone"),
        "{stderr}"
    );
    assert!(
        runtime_files(dir.path()).is_empty(),
        "left behind: {:?}",
        runtime_files(dir.path())
    );

    let small = failed_launch(
        dir.path(),
        &[
            "--response-address",
            closed,
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

    let wrong_key = failed_launch(
        dir.path(),
        &["--response-address", closed, "--public-key", "bm90IGEga2V5"],
    );
    let stderr = String::from_utf8_lossy(&wrong_key.stderr);
    assert_eq!(wrong_key.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not an RSA public key"), "{stderr}");

    // The control: the same launch with a listening response address
    // sends its connection information, serves, and ends cleanly.
    let mut kernel = Launched::start(dir.path(), &key, &["--port-range", "42000..43500"]);
    assert!(
        runtime_files(dir.path())
            .iter()
            .any(|f| f == &format!("kernel-skillkernel-gateway-{KERNEL_ID}.json")),
        "no connection file for local tools: {:?}",
        runtime_files(dir.path())
    );
    assert!(kernel.running(), "the launch exited after responding");
    let _ = Command::new("kill")
        .arg(kernel.child.id().to_string())
        .status();
    let status = kernel.exit_within(15);
    let text = kernel.log_text();
    assert!(
        text.contains("connection information sent to Enterprise Gateway"),
        "{text}"
    );
    assert!(status.success(), "{text}");
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
    let mut kernel = Launched::start(dir.path(), &key, &["--gateway-orphan-timeout", "3"]);
    // Polled every half second for twice the orphan timeout, it lives; a
    // malformed request is logged and ignored.
    kernel.send("{not json");
    for _ in 0..12 {
        kernel.send(r#"{"signum": 0}"#);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(kernel.running(), "{}", kernel.log_text());
    // SIGUSR2 through the port: the daemon writes a state dump.
    kernel.send(r#"{"signum": 12}"#);
    assert!(
        wait_until(Duration::from_secs(10), || kernel
            .log_text()
            .contains("state dump written")),
        "{}",
        kernel.log_text()
    );
    // Released, it shuts down; the port answers until the process is gone
    // (jupyter_client polls it to learn that), and the exit is clean.
    kernel.send(r#"{"shutdown": 1}"#);
    let status = kernel.exit_within(15);
    let text = kernel.log_text();
    assert!(status.success(), "released, the kernel exits 0: {text}");
    assert!(text.contains("request ignored"), "{text}");
    assert!(text.contains("released the kernel"), "{text}");
}

#[test]
fn a_gateway_that_falls_silent_loses_its_kernel_but_one_that_never_probes_does_not() {
    let key = gateway::public_key();
    // Heard from once, then silent: after the orphan timeout the kernel
    // shuts down and exits 1.
    let silent_dir = tempfile::tempdir().unwrap();
    let mut silent = Launched::start(silent_dir.path(), &key, &["--gateway-orphan-timeout", "2"]);
    silent.send(r#"{"signum": 0}"#);
    // The control: a gateway that watches its kernels some other way (EG's
    // container proxies) never probes; its kernel stays.
    let unprobed_dir = tempfile::tempdir().unwrap();
    let mut unprobed = Launched::start(
        unprobed_dir.path(),
        &key,
        &["--gateway-orphan-timeout", "2"],
    );

    let status = silent.exit_within(20);
    let text = silent.log_text();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("no word from Enterprise Gateway"), "{text}");
    assert!(text.contains("shutdown complete"), "{text}");
    assert!(
        runtime_files(silent_dir.path()).is_empty(),
        "left behind: {:?}",
        runtime_files(silent_dir.path())
    );

    std::thread::sleep(Duration::from_secs(3));
    assert!(unprobed.running(), "{}", unprobed.log_text());
    unprobed.send(r#"{"shutdown": 1}"#);
    assert!(
        unprobed.exit_within(15).success(),
        "{}",
        unprobed.log_text()
    );
}
