//! `skillkernel stop|status|reload|dump`: steer a running daemon through
//! its PID file and signals, as an init script would.
//!
//! The PID file is found as the daemon finds it: `--pid-file`, else
//! `[daemon] pid_file` from the same config files, else
//! `<state-dir>/skillkernel.pid`. Whether a daemon runs is decided by the
//! file's lock, never by the number alone, so a stale file naming a reused
//! PID is never signalled.
//!
//! `status` exits with the LSB codes: 0 running, 1 dead with a stale PID
//! file, 3 not running.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use thiserror::Error;

use crate::cli::{ManageArgs, ManageCommand};
use crate::config::{Config, ConfigError};
use crate::dump::dump_dir;
use crate::pidfile::{holder, Holder, PidFileError};

#[derive(Debug, Error)]
pub enum ManageError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("no skillkernel daemon is running (PID file {0})")]
    NotRunning(PathBuf),
    #[error("cannot signal pid {pid}: {source}")]
    Signal { pid: i32, source: nix::Error },
    #[error("the daemon (pid {pid}) did not stop within {secs} s; it is still shutting down")]
    StopTimeout { pid: i32, secs: u64 },
    #[error(
        "no new dump appeared in {dir} within {secs} s; the daemon (pid {pid}) writes dumps \
         to its own <state-dir>/dumps — pass the same --state-dir or --config it runs with"
    )]
    DumpTimeout { dir: PathBuf, pid: i32, secs: u64 },
}

/// Where the daemon this command talks to keeps its PID file and state.
struct Target {
    pid_file: PathBuf,
    state_dir: PathBuf,
}

fn target(args: &ManageArgs) -> Result<Target, ManageError> {
    let (mut config, _) = Config::load(args.config.as_deref())?;
    if let Some(dir) = &args.state_dir {
        config.daemon.state_dir = Some(dir.clone());
    }
    let state_dir = config.state_dir();
    let pid_file = args
        .pid_file
        .clone()
        .or(config.daemon.pid_file)
        .unwrap_or_else(|| state_dir.join("skillkernel.pid"));
    Ok(Target {
        pid_file,
        state_dir,
    })
}

pub fn run(command: ManageCommand) -> Result<ExitCode, ManageError> {
    match command {
        ManageCommand::Status(args) => status(&args),
        ManageCommand::Stop { args, timeout } => stop(&args, timeout),
        ManageCommand::Reload(args) => {
            // Loading the files first doubles as a check: a broken file is
            // reported here and no signal is sent.
            let target = target(&args)?;
            let pid = running(&target.pid_file)?;
            signal(pid, Signal::SIGUSR1)?;
            println!("reload requested (pid {pid}); the daemon logs what changed");
            Ok(ExitCode::SUCCESS)
        }
        ManageCommand::Dump { args, timeout } => dump(&args, timeout),
    }
}

fn running(pid_file: &Path) -> Result<i32, ManageError> {
    match holder(pid_file)? {
        Holder::Running(pid) => Ok(pid),
        _ => Err(ManageError::NotRunning(pid_file.to_owned())),
    }
}

fn signal(pid: i32, signal: Signal) -> Result<(), ManageError> {
    kill(Pid::from_raw(pid), signal).map_err(|source| ManageError::Signal { pid, source })
}

fn status(args: &ManageArgs) -> Result<ExitCode, ManageError> {
    let target = target(args)?;
    let path = target.pid_file.display();
    match holder(&target.pid_file)? {
        Holder::Running(pid) => {
            println!("skillkernel is running (pid {pid}, PID file {path})");
            Ok(ExitCode::SUCCESS)
        }
        Holder::Stale(pid) => {
            let named = pid
                .map(|p| format!(" names pid {p} but"))
                .unwrap_or_default();
            println!("skillkernel is not running: the PID file {path}{named} is not held (stale)");
            Ok(ExitCode::from(1))
        }
        Holder::Missing => {
            println!("skillkernel is not running (no PID file {path})");
            Ok(ExitCode::from(3))
        }
    }
}

fn stop(args: &ManageArgs, timeout: u64) -> Result<ExitCode, ManageError> {
    let target = target(args)?;
    let pid = match holder(&target.pid_file)? {
        Holder::Running(pid) => pid,
        _ => {
            println!("skillkernel is not running");
            return Ok(ExitCode::SUCCESS);
        }
    };
    signal(pid, Signal::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    // The daemon releases the lock in its last shutdown phase, and exits
    // right after; wait for both, so "stopped" means the process is gone.
    while matches!(holder(&target.pid_file)?, Holder::Running(_)) || process_exists(pid) {
        if Instant::now() >= deadline {
            return Err(ManageError::StopTimeout { pid, secs: timeout });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("skillkernel stopped (pid {pid})");
    Ok(ExitCode::SUCCESS)
}

/// Whether `pid` is a live process: signal 0 reaches it and it is not a
/// zombie waiting for its parent (a daemon's parent is init, which may
/// reap late in a container).
fn process_exists(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// The newest dump file in `dir` (names sort by time).
fn newest_dump(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with("skillkernel-") && n.ends_with(".json"))
        })
        .max()
}

fn dump(args: &ManageArgs, timeout: u64) -> Result<ExitCode, ManageError> {
    let target = target(args)?;
    let pid = running(&target.pid_file)?;
    let dir = dump_dir(&target.state_dir);
    let before = newest_dump(&dir);
    signal(pid, Signal::SIGUSR2)?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        if let Some(path) = newest_dump(&dir).filter(|p| Some(p) != before.as_ref()) {
            println!("{}", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            return Err(ManageError::DumpTimeout {
                dir,
                pid,
                secs: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
