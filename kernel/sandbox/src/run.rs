//! Running one sandboxed program to its end: its output streamed to a
//! [`OutputSink`] as it comes, under a wall-clock timeout, an interrupt and
//! a cap on output size, its whole process group killed when any of them
//! ends it (and after it exits, so nothing it started lingers).
//!
//! Nothing here decides what an ending *means*; [`super::verdict`] does.

use std::future::Future;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::launch::{Setup, Spawned};
use super::text::{Tail, Utf8Carry};

/// How often buffered output is flushed while a program runs.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// How long a timed-out group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_millis(300);
/// How much of stderr is kept to explain a failure.
const STDERR_TAIL_BYTES: usize = 16 * 1024;
/// How long output is still read after the program itself exited, from
/// descendants it left behind (`cmd &`) that hold its pipes.
const AFTER_EXIT_GRACE: Duration = Duration::from_millis(100);

/// Which of the program's pipes a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where a program's output goes as it comes.
pub trait OutputSink: Send {
    fn output(&mut self, stream: Stream, text: &str) -> impl Future<Output = ()> + Send;
    /// Called every [`FLUSH_INTERVAL`] while output may be buffered.
    fn flush(&mut self) -> impl Future<Output = ()> + Send;
}

/// The bounds of one run.
#[derive(Debug, Clone, Copy)]
pub struct RunBounds {
    pub timeout: Duration,
    /// stdout and stderr together; the program is killed beyond it.
    pub max_output_bytes: u64,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Interrupted,
    /// It wrote more than `max_output_bytes` and was killed.
    OutputCapped,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Finished {
    pub setup: Setup,
    pub ending: Ending,
    /// The last bytes of stderr (what explains a failure).
    pub stderr_tail: String,
    pub output_bytes: u64,
    pub elapsed: Duration,
}

/// Drives `spawned` to its end. The process group is gone when this
/// returns.
pub async fn drive(
    mut spawned: Spawned,
    sink: &mut impl OutputSink,
    bounds: RunBounds,
    cancel: &CancellationToken,
) -> Finished {
    let started = Instant::now();
    // Should this future be dropped half-way (an outer timeout), the
    // group still dies.
    let guard = GroupGuard::new(spawned.pgid);
    let deadline = tokio::time::sleep(bounds.timeout);
    tokio::pin!(deadline);
    let mut pump = Pump::new(&mut spawned.child);
    let setup = tokio::select! {
        setup = spawned.setup() => Some(setup),
        _ = cancel.cancelled() => None,
        _ = &mut deadline => None,
    };
    let ending = match &setup {
        Some(Setup::Applied(_)) | Some(Setup::Silent) => {
            pump.run(&mut spawned.child, sink, bounds, cancel, &mut deadline)
                .await
        }
        Some(Setup::Failed(_)) => Ending::Exited(wait(&mut spawned.child).await),
        None if cancel.is_cancelled() => Ending::Interrupted,
        None => Ending::TimedOut,
    };
    sink.flush().await;
    kill_group(spawned.pgid, &mut spawned.child, ending).await;
    guard.disarm();
    Finished {
        setup: setup.unwrap_or(Setup::Silent),
        ending,
        stderr_tail: pump.stderr_tail.text(),
        output_bytes: pump.bytes,
        elapsed: started.elapsed(),
    }
}

struct Pump {
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    bytes: u64,
    stderr_tail: Tail,
}

impl Pump {
    fn new(child: &mut Child) -> Self {
        Pump {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            bytes: 0,
            stderr_tail: Tail::new(STDERR_TAIL_BYTES),
        }
    }

    async fn run(
        &mut self,
        child: &mut Child,
        sink: &mut impl OutputSink,
        bounds: RunBounds,
        cancel: &CancellationToken,
        deadline: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Ending {
        let mut out_buf = vec![0u8; 16 * 1024];
        let mut err_buf = vec![0u8; 16 * 1024];
        let mut out_carry = Utf8Carry::default();
        let mut err_carry = Utf8Carry::default();
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut exited: Option<ExitStatus> = None;
        let after_exit = tokio::time::sleep(Duration::MAX);
        tokio::pin!(after_exit);
        while self.stdout.is_some() || self.stderr.is_some() {
            let (stream, n) = tokio::select! {
                n = read_some(&mut self.stdout, &mut out_buf) => (Stream::Stdout, n),
                n = read_some(&mut self.stderr, &mut err_buf) => (Stream::Stderr, n),
                status = wait(child), if exited.is_none() => {
                    exited = Some(status);
                    after_exit.as_mut().reset(tokio::time::Instant::now() + AFTER_EXIT_GRACE);
                    continue;
                }
                _ = &mut after_exit => break,
                _ = tick.tick() => { sink.flush().await; continue; }
                _ = cancel.cancelled() => return Ending::Interrupted,
                _ = deadline.as_mut() => return Ending::TimedOut,
            };
            let Some(n) = n else {
                match stream {
                    Stream::Stdout => self.stdout = None,
                    Stream::Stderr => self.stderr = None,
                }
                continue;
            };
            let allowed = bounds.max_output_bytes.saturating_sub(self.bytes);
            let kept = n.min(usize::try_from(allowed).unwrap_or(usize::MAX));
            self.bytes += n as u64;
            let (buf, carry) = match stream {
                Stream::Stdout => (&out_buf, &mut out_carry),
                Stream::Stderr => (&err_buf, &mut err_carry),
            };
            let text = carry.decode(&buf[..kept]);
            if stream == Stream::Stderr {
                self.stderr_tail.push(&text);
            }
            sink.output(stream, &text).await;
            if kept < n {
                return Ending::OutputCapped;
            }
        }
        for (carry, stream) in [(out_carry, Stream::Stdout), (err_carry, Stream::Stderr)] {
            let rest = carry.finish();
            if !rest.is_empty() {
                sink.output(stream, &rest).await;
            }
        }
        if let Some(status) = exited {
            return Ending::Exited(status);
        }
        tokio::select! {
            status = wait(child) => Ending::Exited(status),
            _ = cancel.cancelled() => Ending::Interrupted,
            _ = deadline.as_mut() => Ending::TimedOut,
        }
    }
}

/// Kills a process group (and removes its pids cgroup) if dropped armed:
/// the cleanup of a run whose future was dropped before it finished.
pub(crate) struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl GroupGuard {
    pub(crate) fn new(pgid: i32) -> Self {
        GroupGuard { pgid, armed: true }
    }

    /// The group was ended properly; nothing to do on drop.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.armed || self.pgid <= 0 {
            return;
        }
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        let helper = self.pgid as u32;
        // Blocking retries while the kernel reaps: off the async threads.
        std::thread::spawn(move || super::cgroup::remove_run_cgroup(helper));
    }
}

/// Reads from an optional pipe; `None` at end of file or on error.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(p) => match p.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

async fn wait(child: &mut Child) -> ExitStatus {
    match child.wait().await {
        Ok(status) => status,
        Err(e) => {
            tracing::warn!(error = %e, "cannot wait for a sandboxed program");
            // Reported as killed by SIGKILL (a wait status of 9).
            std::os::unix::process::ExitStatusExt::from_raw(Signal::SIGKILL as i32)
        }
    }
}

/// Ends the process group. A program that timed out gets SIGTERM and a
/// short grace first (a chance to clean up); everything else is killed
/// outright. seccomp keeps every descendant in the group, and the kernel
/// refuses `fork` to a process with SIGKILL pending, so a group kill also
/// ends a fork bomb.
pub async fn kill_group(pgid: i32, child: &mut Child, ending: Ending) {
    if pgid <= 0 {
        return;
    }
    let group = Pid::from_raw(pgid);
    if ending == Ending::TimedOut {
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_ok() {
            let _ = killpg(group, Signal::SIGKILL);
            remove_cgroup(pgid).await;
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait().await;
    // Members forked while the first kill was delivered.
    let _ = killpg(group, Signal::SIGKILL);
    remove_cgroup(pgid).await;
}

/// Removes the pids cgroup a root helper made for this run (named by the
/// helper's pid, which is the group's id); nothing for other helpers.
async fn remove_cgroup(pgid: i32) {
    let helper = pgid as u32;
    let _ = tokio::task::spawn_blocking(move || super::cgroup::remove_run_cgroup(helper)).await;
}
