//! Test harness: starts the real `skillkernel` binary and connects to it
//! with the real `skillctl` client over ZeroMQ.
//!
//! The binaries are taken from the Cargo target directory this test runs
//! from; `cargo build --workspace --all-targets` must run before `cargo test`
//! (the README's test command and `.ci/run` do).

pub mod detached;
pub mod fake_llm_api;
pub mod fake_ollama;
pub mod gateway;
pub mod llama_server;
pub mod mcp;
pub mod otlp;
pub mod raw_http;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use skillctl::{ExecuteOptions, ExecuteOutcome, KernelClient, Quiet};
use skillkernel_protocol::ConnectionInfo;

/// Path of a workspace binary (`skillkernel`, `skillctl`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --all-targets` before the tests",
        path.display()
    );
    path
}

/// The directory holding the default model (`SKILLKERNEL_MODEL_DIR`, which
/// `scripts/test` sets and fills).
pub fn default_model_dir() -> String {
    let dir = std::env::var("SKILLKERNEL_MODEL_DIR")
        .expect("set SKILLKERNEL_MODEL_DIR to the default model's directory (scripts/test does)");
    assert!(
        Path::new(&dir)
            .join("SmolLM2-135M-Instruct.Q4_1.gguf")
            .exists(),
        "run packaging/fetch-default-model {dir}"
    );
    dir
}

/// A running daemon in a private temporary directory.
pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    pub connection_file: PathBuf,
    pub info: ConnectionInfo,
    stderr_path: PathBuf,
    /// How many times the daemon was started in this directory.
    starts: u32,
    /// Where and with what extra environment it runs.
    launch: Launch,
}

/// Where the daemon runs beyond the defaults: its working directory (the
/// sandbox's workspace; default: the test's) and extra environment.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub cwd: Option<PathBuf>,
    /// Run in the daemon's own temp dir (`Daemon::dir`), so `!commands`
    /// may write there (the sandbox lets them write only in the working
    /// directory).
    pub in_own_dir: bool,
    pub env: Vec<(String, String)>,
    /// A terminal (a pty's slave, see [`terminal`]) the daemon gets as its
    /// controlling terminal and stdin, as when started from a shell.
    pub controlling_terminal: Option<PathBuf>,
}

/// A new pseudo-terminal: its master (keep it open while the daemon runs)
/// and its slave's path, for [`Launch::controlling_terminal`].
pub fn terminal() -> (std::fs::File, PathBuf) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls; the name is copied out at once.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (std::fs::File::from_raw_fd(master), PathBuf::from(path))
    }
}

impl Launch {
    /// Working in the daemon's own temp dir.
    pub fn in_own_dir() -> Self {
        Launch {
            in_own_dir: true,
            ..Launch::default()
        }
    }
}

impl Daemon {
    /// Starts `skillkernel start -f <tmp>/kernel-test.json` plus `args`.
    pub fn start(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let connection_file = dir.path().join("kernel-test.json");
        Self::start_in(dir, connection_file, args)
    }

    /// Starts with a given connection file (created by the daemon when absent).
    pub fn start_in(dir: tempfile::TempDir, connection_file: PathBuf, args: &[&str]) -> Daemon {
        Self::launch(dir, connection_file, args, Launch::default())
    }

    /// As [`Daemon::start_in`], with `launch`.
    pub fn start_in_with(
        dir: tempfile::TempDir,
        connection_file: PathBuf,
        args: &[&str],
        launch: Launch,
    ) -> Daemon {
        Self::launch(dir, connection_file, args, launch)
    }

    /// Starts with `launch`'s working directory and environment.
    pub fn start_with(launch: Launch, args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let connection_file = dir.path().join("kernel-test.json");
        Self::launch(dir, connection_file, args, launch)
    }

    fn launch(
        dir: tempfile::TempDir,
        connection_file: PathBuf,
        args: &[&str],
        launch: Launch,
    ) -> Daemon {
        let stderr_path = dir.path().join("daemon.log");
        let existed = connection_file.exists();
        let child = spawn(dir.path(), &connection_file, &stderr_path, args, &launch);
        let mut daemon = Daemon {
            child,
            dir,
            connection_file,
            info: ConnectionInfo::new_random("127.0.0.1", "unused"),
            stderr_path,
            starts: 1,
            launch,
        };
        daemon.wait_serving(existed);
        daemon
    }

    /// Starts the daemon again in the same directory, with the same
    /// connection file and state dir, once the previous process has
    /// exited (after [`Daemon::kill`], a shutdown request, a signal). Each
    /// start logs to its own file (`daemon.2.log`, …).
    pub fn restart(&mut self, args: &[&str]) {
        assert!(
            self.wait_exit(Duration::from_secs(20)).is_some(),
            "the previous daemon is still running"
        );
        self.starts += 1;
        self.stderr_path = self.dir.path().join(format!("daemon.{}.log", self.starts));
        let existed = self.connection_file.exists();
        self.child = spawn(
            self.dir.path(),
            &self.connection_file,
            &self.stderr_path,
            args,
            &self.launch,
        );
        self.wait_serving(existed);
    }

    /// Kills the process with SIGKILL (no shutdown, no flush) and reaps it.
    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        assert!(
            self.wait_exit(Duration::from_secs(20)).is_some(),
            "the daemon survived SIGKILL"
        );
    }

    /// Waits until the daemon serves: its connection file is written (or,
    /// when it `existed` before, the daemon logged that it serves).
    fn wait_serving(&mut self, existed: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The daemon writes the file atomically once every socket is bound.
            if let Ok(info) = ConnectionInfo::read(&self.connection_file) {
                if existed || info.shell_port != 0 {
                    self.info = info;
                    if !existed || self.log().contains("skillkernel serving") {
                        break;
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("skillkernel exited early ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "skillkernel did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A client connected and ready (IOPub subscription live).
    pub async fn client(&self) -> KernelClient {
        let mut client = KernelClient::connect(&self.info).await.expect("connect");
        client
            .wait_ready(Duration::from_secs(20))
            .await
            .expect("kernel ready");
        client
    }

    /// Runs `skillctl --existing <this daemon> args…` to the end.
    pub fn skillctl(&self, args: &[&str]) -> std::process::Output {
        self.skillctl_with_env(args, &[])
    }

    /// [`Daemon::skillctl`] with `env` added to its environment.
    pub fn skillctl_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        Command::new(bin("skillctl"))
            .arg("--existing")
            .arg(&self.connection_file)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run skillctl")
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("kill");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `skillkernel start -f <connection_file>` plus `args` in `dir`.
fn spawn(
    dir: &Path,
    connection_file: &Path,
    stderr_path: &Path,
    args: &[&str],
    launch: &Launch,
) -> Child {
    let stderr = std::fs::File::create(stderr_path).expect("log file");
    let stdout = std::fs::File::create(dir.join("daemon.out")).expect("out file");
    let mut command = Command::new(bin("skillkernel"));
    if let Some(cwd) = &launch.cwd {
        command.current_dir(cwd);
    } else if launch.in_own_dir {
        command.current_dir(dir);
    }
    if let Some(tty) = &launch.controlling_terminal {
        let tty = std::ffi::CString::new(tty.as_os_str().as_encoded_bytes()).expect("tty path");
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = libc::open(tty.as_ptr(), libc::O_RDWR);
                if fd < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::dup2(fd, 0);
                Ok(())
            });
        }
    }
    command
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .arg("start")
        .arg("-f")
        .arg(connection_file)
        .args(args)
        .env("JUPYTER_RUNTIME_DIR", dir)
        .env("SKILLKERNEL_LOG", "info")
        // Each daemon gets its own state and no host config files, so
        // tests neither share a response cache nor pick up local settings.
        .env("SKILLKERNEL_STATE_DIR", dir.join("state"))
        .env("SKILLKERNEL_SYSTEM_CONFIG", "")
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn skillkernel")
}

/// Every text the cell displayed, streamed or failed with, joined.
pub fn shown(outcome: &ExecuteOutcome) -> String {
    outcome
        .iopub
        .iter()
        .flat_map(|m| {
            let c = &m.content;
            [
                c["data"]["text/plain"].as_str(),
                c["data"]["text/markdown"].as_str(),
                c["text"].as_str(),
                c["evalue"].as_str(),
            ]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `code` with default options and no output handler.
pub async fn run(client: &mut KernelClient, code: &str) -> ExecuteOutcome {
    let options = ExecuteOptions {
        timeout: Duration::from_secs(60),
        ..ExecuteOptions::default()
    };
    client
        .execute(code, &options, &mut Quiet)
        .await
        .unwrap_or_else(|e| panic!("executing {code:?}: {e}"))
}

/// Sends an `execute_request` whose content is not one (`code` is a
/// number): the kernel answers with an error and logs a warning while
/// handling it. Returns the reply.
pub async fn invalid_execute_request(client: &mut KernelClient) -> skillkernel_protocol::Message {
    let reply = client
        .request(
            skillctl::Target::Shell,
            "execute_request",
            serde_json::json!({"code": 5}),
            Duration::from_secs(10),
        )
        .await
        .expect("a reply to an invalid execute_request");
    assert_eq!(reply.content["status"], "error", "{:?}", reply.content);
    reply
}

/// A TCP port free right now on 127.0.0.1, below Linux's ephemeral range
/// (32768 and up): a daemon binding its own channels to port 0 can never
/// be handed the same port before the test uses it. Each call in a process
/// gets another port; the start depends on the pid.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() * 97) % 12_000;
    for _ in 0..2_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (20_000 + (base - 20_000 + n * 7) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A peer that has done the ZMTP 3.0 NULL handshake as `socket_type`
/// (with `identity`, for a DEALER) on a plain socket, and does nothing
/// else unless told: the `zeromq` crate's sockets keep reading into
/// memory, so they cannot stand in for a client that stops reading.
pub fn raw_zmtp_peer(port: u16, socket_type: &str, identity: &[u8]) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Greeting: signature, version 3.0, NULL mechanism, as-server = 0.
    let mut greeting = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    greeting.extend(mechanism);
    greeting.resize(64, 0);
    stream.write_all(&greeting).expect("send greeting");
    let mut peer = [0u8; 64];
    stream.read_exact(&mut peer).expect("read greeting");
    // READY with Socket-Type (and Identity).
    let mut ready = vec![5u8];
    ready.extend(b"READY");
    for (name, value) in [
        ("Socket-Type", socket_type.as_bytes()),
        ("Identity", identity),
    ] {
        ready.push(name.len() as u8);
        ready.extend(name.as_bytes());
        ready.extend((value.len() as u32).to_be_bytes());
        ready.extend(value);
    }
    let mut frame = vec![0x04, ready.len() as u8];
    frame.extend(ready);
    stream.write_all(&frame).expect("send READY");
    // The other side's READY.
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("read READY");
    let mut body = vec![0u8; head[1] as usize];
    stream.read_exact(&mut body).expect("read READY body");
    stream
}

/// A multipart message in ZMTP wire form.
pub fn zmtp_message(frames: &[bytes::Bytes]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let more = u8::from(i + 1 < frames.len());
        if frame.len() > 255 {
            out.push(more | 0x02);
            out.extend((frame.len() as u64).to_be_bytes());
        } else {
            out.push(more);
            out.push(frame.len() as u8);
        }
        out.extend_from_slice(frame);
    }
    out
}

/// An IOPub subscriber that subscribes to everything and then never reads,
/// at the TCP level. Holding the returned stream keeps it stalled.
pub fn stalled_subscriber(info: &ConnectionInfo) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = raw_zmtp_peer(info.iopub_port, "SUB", b"");
    // Subscribe to every topic: a one-byte message `\x01`.
    stream.write_all(&[0x00, 0x01, 0x01]).expect("subscribe");
    stream
}

/// Copies the folder `from` to `to`, subfolders included.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Sends a `skill_request` and collects its reply and output.
pub async fn skill_request(
    client: &mut KernelClient,
    content: serde_json::Value,
) -> ExecuteOutcome {
    let msg = client.message("skill_request", content);
    client
        .send(skillctl::Target::Shell, &msg)
        .await
        .expect("send skill_request");
    client
        .collect(&msg.header.msg_id, Duration::from_secs(120), &mut Quiet)
        .await
        .expect("the skill_reply")
}

/// The tool displays of a cell: each call's, shown then updated.
pub fn tool_displays(outcome: &ExecuteOutcome) -> Vec<&serde_json::Value> {
    outcome
        .iopub
        .iter()
        .filter(|m| {
            m.content["transient"]["display_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("tool-"))
        })
        .map(|m| &m.content)
        .collect()
}
