//! An OTLP/HTTP trace receiver (`tests/servers/otlp_receiver.py`) built on
//! the OpenTelemetry project's protobuf types, run with the Jupyter test
//! venv's python (`SKILLKERNEL_VENV`, else `.venv` in the repo; the
//! README's test command installs `opentelemetry-proto` there).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct OtlpReceiver {
    child: Child,
    port: u16,
    spans: PathBuf,
    _dir: tempfile::TempDir,
}

/// The test venv's python.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("SKILLKERNEL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test (it makes the venv with opentelemetry-proto)",
        python.display()
    );
    python
}

impl OtlpReceiver {
    /// A receiver that records every span; with `stall`, one that reads
    /// each export and never answers.
    pub fn start(stall: bool) -> OtlpReceiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let spans = dir.path().join("spans.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/otlp_receiver.py");
        let mut command = Command::new(python());
        command.arg(&script).arg(&spans);
        if stall {
            command.arg("--stall");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("the receiver's first line");
        let port = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the receiver did not start: {first:?}"));
        OtlpReceiver {
            child,
            port,
            spans,
            _dir: dir,
        }
    }

    /// The base URL to configure as `otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.spans)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `done` holds for the spans received, and returns them.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
                panic!("spans received did not complete in {timeout:?}: {names:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
