//! Resident programs: a sandboxed server the kernel keeps running and
//! talks to over its stdin and stdout (an MCP server launched by the
//! `[mcp.servers]` configuration), unlike [`super::run`]'s programs,
//! which run to their end.
//!
//! The program runs under the helper like any other (its own process
//! group, the policy's layers); its stderr is kept as a bounded tail to
//! explain a crash. Dropping the [`ResidentProcess`] kills the group, and
//! [`super::Sandbox::kill_all_now`] kills it at shutdown.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::process::{ChildStdin, ChildStdout};

use super::launch::{LaunchError, Setup, Spawned};
use super::text::{Tail, Utf8Carry};

/// The stderr a resident program keeps for its error messages.
const STDERR_TAIL_BYTES: usize = 4 * 1024;

/// Why a resident program is not running.
#[derive(Debug, thiserror::Error)]
pub enum ResidentError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    KeptShut(#[from] crate::deny::KeptShut),
    #[error("the sandbox refused to start it ({stage}): {message}")]
    Setup { stage: String, message: String },
    #[error("the sandbox helper ended before the program started")]
    Silent,
    #[error("its pipes were not created")]
    Pipes,
}

/// A sandboxed program that keeps running.
pub struct ResidentProcess {
    spawned: Spawned,
    pgid: i32,
    io: Option<(ChildStdout, ChildStdin)>,
    stderr_tail: Arc<Mutex<Tail>>,
    /// The sandbox's set of groups killed at exit.
    running: Arc<Mutex<HashSet<i32>>>,
}

impl ResidentProcess {
    /// Waits for the helper's word on `spawned`; the group is killed if
    /// the set-up failed, and also if this future is dropped half-way.
    pub(super) async fn start(
        mut spawned: Spawned,
        running: Arc<Mutex<HashSet<i32>>>,
    ) -> (Result<ResidentProcess, ResidentError>, Setup) {
        let pgid = spawned.pgid;
        skillkernel_stdx::lock(&running).insert(pgid);
        let stderr_tail = Arc::new(Mutex::new(Tail::new(STDERR_TAIL_BYTES)));
        if let Some(mut stderr) = spawned.child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut carry = Utf8Carry::default();
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let text = carry.decode(&buf[..n]);
                    skillkernel_stdx::lock(&tail).push(&text);
                }
            });
        }
        let io = match (spawned.child.stdout.take(), spawned.child.stdin.take()) {
            (Some(stdout), Some(stdin)) => Some((stdout, stdin)),
            _ => None,
        };
        // Built before the wait, so that dropping this future kills it.
        let mut process = ResidentProcess {
            spawned,
            pgid,
            io,
            stderr_tail,
            running,
        };
        let setup = process.spawned.setup().await;
        let started = match &setup {
            Setup::Applied(_) if process.io.is_some() => Ok(process),
            Setup::Applied(_) => Err(ResidentError::Pipes),
            Setup::Failed(failure) => Err(ResidentError::Setup {
                stage: format!("{:?}", failure.stage).to_lowercase(),
                message: failure.message.clone(),
            }),
            Setup::Silent => Err(ResidentError::Silent),
        };
        (started, setup)
    }

    /// The program's stdout and stdin (once).
    pub fn take_io(&mut self) -> Option<(ChildStdout, ChildStdin)> {
        self.io.take()
    }

    /// The program's process id.
    pub fn id(&self) -> Option<u32> {
        self.spawned.child.id()
    }

    /// How the program ended, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.spawned.child.try_wait().ok().flatten()
    }

    /// The end of what the program wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        skillkernel_stdx::lock(&self.stderr_tail).text()
    }
}

impl Drop for ResidentProcess {
    fn drop(&mut self) {
        if self.pgid > 0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The child is reaped by tokio (kill_on_drop); the group's cgroup,
        // if a root helper made one, is removed once it is empty.
        let _ = self.spawned.child.start_kill();
        skillkernel_stdx::lock(&self.running).remove(&self.pgid);
        let helper = self.pgid as u32;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let _ =
                    tokio::task::spawn_blocking(move || super::cgroup::remove_run_cgroup(helper))
                        .await;
            });
        }
    }
}
