//! Driving `skillkernel sandbox-exec` from tests: run a program under a
//! policy with a status pipe, and ask the host what it supports.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bin;

/// What one sandboxed run produced.
pub struct Run {
    /// The helper's pid (the program's, after `execve`).
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The JSON lines from `--status-fd`.
    pub status_lines: Vec<Value>,
}

impl Run {
    pub fn applied(&self) -> &Value {
        self.status_lines
            .iter()
            .find(|l| l["event"] == "applied")
            .unwrap_or_else(|| panic!("no `applied` status line: {:?}", self.status_lines))
    }

    pub fn describe(&self) -> String {
        format!(
            "status {:?}, stdout {:?}, stderr {:?}, status lines {:?}",
            self.status, self.stdout, self.stderr, self.status_lines
        )
    }
}

/// Runs `program` under `policy`, with `SKILLKERNEL_TEST_SECRET` in the
/// helper's environment (as the daemon's secrets would be), killing it if
/// it outlives 30 s; then removes the run's pids cgroup, as the daemon does.
pub fn sandboxed(policy: &Value, program: &[&str]) -> Run {
    let run = sandboxed_keeping_cgroup(policy, program);
    skillkernel_sandbox::cgroup::remove_run_cgroup(run.pid);
    run
}

/// [`sandboxed`], leaving the run's pids cgroup (if any) for the test.
pub fn sandboxed_keeping_cgroup(policy: &Value, program: &[&str]) -> Run {
    let (status_read, status_write) = nix::unistd::pipe().expect("status pipe");
    let mut child = Command::new(bin("skillkernel"))
        .arg("sandbox-exec")
        .arg("--policy-json")
        .arg(policy.to_string())
        .arg("--status-fd")
        .arg(status_write.as_raw_fd().to_string())
        .arg("--")
        .args(program)
        .env("SKILLKERNEL_TEST_SECRET", "hunter2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn skillkernel sandbox-exec");
    drop(status_write);
    let pid = child.id();
    let mut status_text = String::new();
    std::fs::File::from(status_read)
        .read_to_string(&mut status_text)
        .expect("read the status pipe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sandboxed {program:?} still ran after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status_lines = status_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad status line {l:?}: {e}")))
        .collect();
    Run {
        pid,
        status,
        stdout,
        stderr,
        status_lines,
    }
}

pub fn probe() -> Value {
    let out = Command::new(bin("skillkernel"))
        .args(["sandbox-exec", "--probe"])
        .output()
        .expect("run sandbox-exec --probe");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("probe prints JSON")
}

/// `None` when the probe says `layer` (`landlock`, `processes`, …) can be
/// enforced here, else its reason.
pub fn layer_unavailable(layer: &str) -> Option<String> {
    let probe = probe();
    if probe[layer]["available"] == true {
        None
    } else {
        Some(probe[layer]["detail"].to_string())
    }
}

/// The system interpreter (a `PATH` lookup could find a pyenv shim under
/// `$HOME`, which the default policy does not let the program read).
pub const PYTHON: &str = "/usr/bin/python3";

pub fn policy_in(workspace: &Path) -> Value {
    json!({ "workspace": workspace })
}

/// Skips the test, with the probe's reason, when the host cannot enforce
/// `$layer`.
#[macro_export]
macro_rules! require_layer {
    ($layer:literal, $what:literal) => {
        if let Some(reason) = $crate::sandbox::layer_unavailable($layer) {
            eprintln!("SKIPPED: {} on this host: {reason}", $what);
            return;
        }
    };
}

/// Skips the test, with the probe's reason, when Landlock is missing.
#[macro_export]
macro_rules! require_landlock {
    () => {
        $crate::require_layer!("landlock", "Landlock is not available")
    };
}
