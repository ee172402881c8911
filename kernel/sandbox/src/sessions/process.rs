//! One session's process: starting it under the helper, one exchange with
//! it (input in, answer out, until the marker or one line), and how it
//! ended.
//!
//! An exchange is bounded like a command: a timeout, an interrupt (SIGINT
//! to the process group, then a short grace for the answer to end) and the
//! output cap. stdin is written while stdout is read, so a large input
//! whose answer is also large cannot deadlock the two pipes. Between
//! exchanges stderr keeps only a bounded backlog and a tail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Reply, SessionError, SessionSpec};
use crate::audit::Subject;
use crate::launch::{Helper, Setup, Stdin};
use crate::run::{Ending, Finished, OutputSink, Stream};
use crate::text::{Tail, Utf8Carry};

/// After an interrupted exchange's answer: stderr counts as done once
/// quiet this long, and is waited for no longer than `STDERR_SETTLE_MAX`.
const STDERR_QUIET: Duration = Duration::from_millis(20);
const STDERR_SETTLE_MAX: Duration = Duration::from_millis(250);
/// After any exchange's answer: scheduler turns given to the stderr
/// reader until this many in a row bring nothing, at most
/// `STDERR_MAX_TURNS` (microseconds each, no timer).
const STDERR_IDLE_TURNS: u32 = 3;
const STDERR_MAX_TURNS: u32 = 64;
/// How long an exchange waits for stderr known to be on its way in (bytes
/// unread in the pipe, or a chunk being handed on): only then, so it
/// costs nothing otherwise, and long enough for a reader task kept off a
/// busy worker for a while.
const STDERR_TAKEN_MAX: Duration = Duration::from_secs(2);

/// How long an interrupted exchange may take to finish its answer before
/// the session is ended instead.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
const STDERR_TAIL_BYTES: usize = 16 * 1024;
/// stderr chunks (of up to 8 KiB) held for the next exchange; beyond, they
/// are dropped (the tail keeps the end).
const STDERR_BACKLOG: usize = 64;

/// A running session process.
pub(super) struct Live {
    pub fingerprint: String,
    pub skill: String,
    pub child: Child,
    pub pgid: i32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: mpsc::Receiver<String>,
    stderr_tail: Arc<StdMutex<Tail>>,
    /// What tells whether stderr written so far has been taken in (see
    /// [`StderrProbe`]).
    stderr_probe: StderrProbe,
    pub setup: Setup,
    pub exchanges: u64,
    pub last_used: Instant,
    /// An exchange began and did not finish (its future was dropped): the
    /// process is out of step and must not be reused.
    pub in_exchange: bool,
    /// The session's proxy (network by host): served while it lives.
    _proxy: Option<crate::proxy::RunProxy>,
}

/// How an exchange that ended the session went.
pub(super) struct Ended {
    pub text: String,
    pub ending: Ending,
    pub output_bytes: u64,
}

impl Live {
    /// Starts the session's program; the set-up may have failed (see
    /// [`Live::setup`]).
    pub async fn start(
        helper: &Helper,
        spec: &SessionSpec,
        fingerprint: String,
    ) -> Result<Live, SessionError> {
        let (name, version) = spec.skill.split_once('@').unwrap_or((&spec.skill, ""));
        let subject = Subject::skill("session", name, version);
        let mut spawned = helper
            .spawn(&spec.policy, &spec.argv, Stdin::Piped, &subject)
            .await?;
        let setup = spawned.setup().await;
        let (Some(stdin), Some(stdout)) = (spawned.child.stdin.take(), spawned.child.stdout.take())
        else {
            return Err(SessionError::Input(std::io::Error::other(
                "the session's pipes were not created",
            )));
        };
        let (tx, rx) = mpsc::channel(STDERR_BACKLOG);
        let tail = Arc::new(StdMutex::new(Tail::new(STDERR_TAIL_BYTES)));
        let mut stderr_probe = StderrProbe::default();
        if let Some(mut stderr) = spawned.child.stderr.take() {
            stderr_probe = StderrProbe::of(&stderr);
            let tail = Arc::clone(&tail);
            let taking = Arc::clone(&stderr_probe.taking);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8 * 1024];
                let mut carry = Utf8Carry::default();
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    taking.store(true, Ordering::SeqCst);
                    let text = carry.decode(&buf[..n]);
                    skillkernel_stdx::lock(&tail).push(&text);
                    let _ = tx.try_send(text);
                    taking.store(false, Ordering::SeqCst);
                }
            });
        }
        Ok(Live {
            fingerprint,
            skill: spec.skill.clone(),
            pgid: spawned.pgid,
            child: spawned.child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: rx,
            stderr_tail: tail,
            stderr_probe,
            setup,
            exchanges: 0,
            last_used: Instant::now(),
            in_exchange: false,
            _proxy: spawned.proxy,
        })
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the session ended, for the verdict; `elapsed` is the exchange's.
    pub fn finish(self, ending: Ending, output_bytes: u64, elapsed: Duration) -> Finished {
        let stderr_tail = skillkernel_stdx::lock(&self.stderr_tail).text();
        Finished {
            setup: self.setup,
            ending,
            stderr_tail,
            output_bytes,
            elapsed,
        }
    }

    /// One exchange: `Ok((answer, interrupted))`, or `Err(Ended)` when the
    /// session must end (timeout, a dead program, the output cap, an
    /// interrupt it did not survive).
    #[allow(clippy::too_many_arguments)]
    pub async fn talk(
        &mut self,
        spec: &SessionSpec,
        input: &str,
        token: &str,
        sink: &mut impl OutputSink,
        timeout: Duration,
        max_output_bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<(String, bool), Ended> {
        // Drop stderr written between exchanges.
        while self.stderr.try_recv().is_ok() {}
        let request = request(spec, input, token);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let Live {
            stdin,
            stdout,
            stderr,
            stderr_probe,
            pgid,
            ..
        } = self;
        let write = async {
            stdin.write_all(request.as_bytes()).await?;
            stdin.flush().await
        };
        tokio::pin!(write);
        let mut written = false;
        let mut interrupted_at: Option<Instant> = None;
        let mut answer = String::new();
        let mut bytes = 0u64;
        let mut line = Vec::new();
        let end = |text: String, ending, bytes| {
            Err(Ended {
                text,
                ending,
                output_bytes: bytes,
            })
        };
        loop {
            let grace = async {
                match interrupted_at {
                    Some(at) => {
                        tokio::time::sleep(INTERRUPT_GRACE.saturating_sub(at.elapsed())).await
                    }
                    None => std::future::pending().await,
                }
            };
            // One line at most the rest of the cap (plus one byte, to see
            // it overflow).
            let room = max_output_bytes
                .saturating_sub(bytes + line.len() as u64)
                .saturating_add(1);
            let mut bounded = (&mut *stdout).take(room);
            tokio::select! {
                done = &mut write, if !written => {
                    written = true;
                    if done.is_err() {
                        return end(answer, exited(), bytes);
                    }
                }
                read = bounded.read_until(b'\n', &mut line) => {
                    match read {
                        Ok(0) | Err(_) if interrupted_at.is_some() => {
                            return end(answer, Ending::Interrupted, bytes);
                        }
                        Ok(0) | Err(_) => return end(answer, exited(), bytes),
                        Ok(_) => {}
                    }
                    bytes += line.len() as u64;
                    if bytes > max_output_bytes {
                        return end(answer, Ending::OutputCapped, bytes);
                    }
                    let text = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    let (before, done) = match &spec.reply {
                        Reply::Marker(_) => match text.find(token) {
                            Some(at) => (text[..at].to_owned(), true),
                            None => (text, false),
                        },
                        Reply::Line => (text, true),
                    };
                    if !before.is_empty() {
                        sink.output(Stream::Stdout, &before).await;
                        answer.push_str(&before);
                    }
                    if done {
                        // stderr written before the marker is in its pipe
                        // by now, but its reader task may not have passed
                        // it on (a traceback comes in several writes): give
                        // that task turns until a few bring nothing
                        // (bounded). An interrupt's traceback is written
                        // just before the marker, so after one, also wait
                        // until stderr goes quiet (bounded).
                        let (mut idle, mut turns) = (0, 0);
                        let taken_by = Instant::now() + STDERR_TAKEN_MAX;
                        while (idle < STDERR_IDLE_TURNS && turns < STDERR_MAX_TURNS)
                            || (stderr_probe.untaken() && Instant::now() < taken_by)
                        {
                            tokio::task::yield_now().await;
                            turns += 1;
                            idle += 1;
                            while let Ok(text) = stderr.try_recv() {
                                sink.output(Stream::Stderr, &text).await;
                                idle = 0;
                            }
                        }
                        let settle = interrupted_at.map(|_| Instant::now() + STDERR_SETTLE_MAX);
                        loop {
                            while let Ok(text) = stderr.try_recv() {
                                sink.output(Stream::Stderr, &text).await;
                            }
                            let Some(until) = settle else { break };
                            let wait = STDERR_QUIET.min(until.saturating_duration_since(Instant::now()));
                            match tokio::time::timeout(wait, stderr.recv()).await {
                                Ok(Some(text)) => sink.output(Stream::Stderr, &text).await,
                                _ => break,
                            }
                        }
                        sink.flush().await;
                        return Ok((answer, interrupted_at.is_some()));
                    }
                }
                Some(text) = stderr.recv() => {
                    bytes += text.len() as u64;
                    if bytes > max_output_bytes {
                        return end(answer, Ending::OutputCapped, bytes);
                    }
                    sink.output(Stream::Stderr, &text).await;
                }
                _ = cancel.cancelled(), if interrupted_at.is_none() => {
                    interrupted_at = Some(Instant::now());
                    let _ = killpg(Pid::from_raw(*pgid), Signal::SIGINT);
                }
                _ = grace => return end(answer, Ending::Interrupted, bytes),
                _ = deadline.as_mut() => return end(answer, Ending::TimedOut, bytes),
            }
        }
    }
}

/// The program went away; its real status is collected after the kill.
fn exited() -> Ending {
    Ending::Exited(std::process::ExitStatus::default())
}

/// What is written for one exchange.
fn request(spec: &SessionSpec, input: &str, token: &str) -> String {
    let mut request = input.trim_end_matches('\n').to_owned();
    request.push('\n');
    if let Reply::Marker(command) = &spec.reply {
        // A blank line first ends an open block (Python's `def`, `for`).
        request.push('\n');
        request.push_str(&command.replace(Reply::PLACEHOLDER, token));
        request.push('\n');
    }
    request
}

/// Whether stderr the program wrote has all been taken in by the reader
/// task: its pipe holds nothing unread (`FIONREAD` on a duplicate of the
/// descriptor) and the reader is not between a read and handing the text
/// on. The program wrote its stderr before the marker, so once the marker
/// is read this becomes true soon; until then the exchange waits
/// (bounded), so a traceback is never judged before it is seen.
#[derive(Default)]
struct StderrProbe {
    fd: Option<std::os::fd::OwnedFd>,
    taking: Arc<AtomicBool>,
}

impl StderrProbe {
    fn of(stderr: &tokio::process::ChildStderr) -> StderrProbe {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: dup of a descriptor we own; the copy is owned here.
        let fd = unsafe { libc::dup(stderr.as_raw_fd()) };
        StderrProbe {
            // SAFETY: a fresh descriptor from dup, owned by nothing else.
            fd: (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }),
            taking: Arc::default(),
        }
    }

    /// Stderr is still on its way in.
    fn untaken(&self) -> bool {
        use std::os::fd::AsRawFd;
        if self.taking.load(Ordering::SeqCst) {
            return true;
        }
        let Some(fd) = &self.fd else {
            return false;
        };
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut unread) };
        rc == 0 && unread > 0
    }
}
