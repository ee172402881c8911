//! A daemon started as a supervisor starts it: `skillkernel start
//! --daemon`, found afterwards through its PID file, never as a child.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use skillkernel_protocol::ConnectionInfo;

use crate::bin;

/// Paths of one detached daemon, all in a private temporary directory.
pub struct Detached {
    pub dir: tempfile::TempDir,
    pub pid_file: PathBuf,
    pub connection_file: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Written by the test as the daemon's `--config` file.
    pub config_file: PathBuf,
}

impl Default for Detached {
    fn default() -> Self {
        Self::new()
    }
}

impl Detached {
    pub fn new() -> Detached {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        let config_file = root.join("config.toml");
        std::fs::write(&config_file, "").expect("config file");
        Detached {
            pid_file: root.join("run/skillkernel.pid"),
            connection_file: root.join("run/kernel.json"),
            state_dir: root.join("state"),
            log_dir: root.join("log"),
            config_file,
            dir,
        }
    }

    /// A `skillkernel` command with this daemon's environment: no host
    /// config files, the test's model dir.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin("skillkernel"));
        cmd.env("SKILLKERNEL_SYSTEM_CONFIG", "")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env("JUPYTER_RUNTIME_DIR", self.dir.path().join("runtime"))
            .env_remove("SKILLKERNEL_STATE_DIR")
            .env_remove("SKILLKERNEL_PID_FILE")
            .env_remove("RUST_LOG");
        cmd
    }

    /// The start flags a unit file would give, plus `extra`.
    pub fn start_args(&self) -> Vec<String> {
        [
            "start",
            "--daemon",
            "--pid-file",
            &self.pid_file.display().to_string(),
            "--connection-file",
            &self.connection_file.display().to_string(),
            "--state-dir",
            &self.state_dir.display().to_string(),
            "--log-dir",
            &self.log_dir.display().to_string(),
            "--config",
            &self.config_file.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Runs the launcher to its exit (it exits once the daemon serves).
    pub fn launch(&self, extra: &[&str]) -> Output {
        self.command()
            .args(self.start_args())
            .args(extra)
            .output()
            .expect("run skillkernel start --daemon")
    }

    /// Runs `skillkernel <command> --pid-file … --state-dir …`.
    pub fn manage(&self, command: &str) -> Output {
        self.command()
            .arg(command)
            .arg("--pid-file")
            .arg(&self.pid_file)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--config")
            .arg(&self.config_file)
            .output()
            .expect("run skillkernel management command")
    }

    /// The PID the PID file names.
    pub fn pid(&self) -> i32 {
        std::fs::read_to_string(&self.pid_file)
            .expect("PID file")
            .trim()
            .parse()
            .expect("PID file holds a number")
    }

    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo::read(&self.connection_file).expect("connection file")
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signal the daemon");
    }

    /// Everything in the log directory, oldest file first.
    pub fn log(&self) -> String {
        read_all(&self.log_dir)
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        // Never leave a daemon behind a failed test.
        if let Ok(text) = std::fs::read_to_string(&self.pid_file) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Whether process `pid` exists (zombies of other parents count as gone
/// soon enough: they are reaped by init).
pub fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
            .unwrap_or(true)
}

/// Polls `check` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_all(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_none_or(|e| e != "lz4"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n")
}
