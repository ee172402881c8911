//! llama-cpp-python's OpenAI-compatible server (`python -m
//! llama_cpp.server`), the real `openai` backend, serving a GGUF file on a
//! free loopback port.
//!
//! Its venv is built by `scripts/setup-llama-server` (which `scripts/test`
//! runs) outside the clone: `SKILLKERNEL_LLAMA_VENV`, else
//! `~/.cache/skillkernel/venv-llama`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server, killed on drop.
pub struct LlamaServer {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The venv's python, or a message saying how to make it.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("SKILLKERNEL_LLAMA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/skillkernel/venv-llama")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-llama-server (scripts/test does)",
        python.display()
    );
    python
}

impl LlamaServer {
    /// Serves `model` as `alias`; waits until `/v1/models` answers.
    pub fn start(model: &Path, alias: &str) -> LlamaServer {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let port = crate::free_port();
        let child = Command::new(python())
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--model_alias", alias])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", "2048", "--n_threads", "2", "--verbose", "false"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("server.err")).unwrap())
            .spawn()
            .expect("start python -m llama_cpp.server");
        let mut server = LlamaServer {
            child,
            port,
            log,
            _dir: dir,
        };
        server.wait_ready(Duration::from_secs(120));
        server
    }

    /// The base URL of its API (`…/v1`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the server printed.
    pub fn log(&self) -> String {
        let err = self.log.with_file_name("server.err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("llama_cpp.server exited ({status}): {}", self.log());
            }
            if status_of(self.port, "/v1/models") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "llama_cpp.server did not answer in {timeout:?}: {}",
            self.log()
        );
    }
}

/// The status code of `GET path`, if the server answers.
fn status_of(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
