//! Session skills' processes: one sandboxed program per skill (e.g.
//! `python3`), started on first use and kept between executions, so its
//! state (variables, imports, the working directory) carries from one cell
//! to the next.
//!
//! **One exchange** writes the input to the program's stdin and reads its
//! stdout until the answer ends:
//! * `reply: marker` (the default): after the input the kernel writes the
//!   skill's `marker` command with a fresh token in place of `{marker}`
//!   (`echo {marker}` for shells, `print("{marker}")` for Python); the
//!   answer is everything before the line that prints the token;
//! * `reply: line`: the input is one line and the answer is one line.
//!
//! stderr is streamed while an exchange runs and drained between them.
//! An interrupt sends SIGINT to the session's process group and waits
//! briefly for the answer to end (Python raises `KeyboardInterrupt` and
//! the session lives on); a timeout, a dead program or a changed skill
//! ends the session. At most `max_sessions` run at once: the least
//! recently used idle one makes room. Idle sessions end after the idle
//! timeout; all end at unload and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use super::launch::{Helper, LaunchError, Setup, Stdin};
use super::run::{kill_group, Ending, Finished, OutputSink, Stream};
use super::text::Tail;
use super::SandboxPolicy;

/// How long an interrupted exchange may take to finish its answer before
/// the session is ended instead.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// How often idle sessions are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(10);
const STDERR_TAIL_BYTES: usize = 16 * 1024;

/// How a session's answer ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The answer ends at the line printed by this command (with
    /// `{marker}` replaced by a fresh token).
    Marker(String),
    /// One line in, one line out.
    Line,
}

impl Reply {
    /// What `{marker}` stands for in a marker command.
    pub const PLACEHOLDER: &'static str = "{marker}";
}

impl Default for Reply {
    fn default() -> Self {
        Reply::Marker("echo {marker}".into())
    }
}

/// What a session runs.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// The session's name: the skill's name.
    pub name: String,
    /// `name@version`, for reports.
    pub skill: String,
    pub argv: Vec<String>,
    pub policy: SandboxPolicy,
    pub reply: Reply,
}

impl SessionSpec {
    /// Two specs with the same fingerprint can share a process.
    fn fingerprint(&self) -> String {
        format!(
            "{:?}|{:?}|{}",
            self.argv,
            self.reply,
            serde_json::to_string(&self.policy).unwrap_or_default()
        )
    }
}

/// A session, as `%sandbox status` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub name: String,
    pub skill: String,
    pub pid: i32,
    pub exchanges: u64,
    pub idle_secs: u64,
    pub busy: bool,
}

/// Why an exchange did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("{max} sessions are running and all are busy; end one with `%sandbox end NAME` or raise `[sandbox] max_sessions`")]
    TooMany { max: usize },
    #[error("the session's input could not be written: {0}")]
    Input(std::io::Error),
}

/// How one exchange ended. `finished` is set when the session ended with it.
#[derive(Debug)]
pub struct Exchange {
    /// The answer (stdout before the marker).
    pub text: String,
    pub interrupted: bool,
    /// The session is gone: how it ended, for the verdict.
    pub ended: Option<Finished>,
    /// A new process was started for this exchange.
    pub started: bool,
}

struct Live {
    fingerprint: String,
    skill: String,
    child: Child,
    pgid: i32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: mpsc::UnboundedReceiver<String>,
    stderr_tail: Arc<StdMutex<Tail>>,
    setup: Setup,
    exchanges: u64,
    last_used: Instant,
    started: Instant,
}

type Slot = Arc<Mutex<Option<Live>>>;

struct Inner {
    slots: StdMutex<HashMap<String, Slot>>,
    /// Process groups of live sessions, for a synchronous kill at exit.
    groups: StdMutex<HashMap<String, i32>>,
    max: usize,
    idle_timeout: Duration,
    reaper_started: std::sync::atomic::AtomicBool,
}

/// Every session of one kernel.
pub struct Sessions {
    inner: Arc<Inner>,
    tokens: AtomicU64,
}

impl Sessions {
    pub fn new(max: usize, idle_timeout: Duration) -> Self {
        Sessions {
            inner: Arc::new(Inner {
                slots: StdMutex::new(HashMap::new()),
                groups: StdMutex::new(HashMap::new()),
                max: max.max(1),
                idle_timeout,
                reaper_started: false.into(),
            }),
            tokens: AtomicU64::new(0),
        }
    }

    /// Sends `input` to the session `spec.name` (starting it if needed)
    /// and streams its answer to `sink`.
    pub async fn exchange(
        &self,
        helper: &Helper,
        spec: &SessionSpec,
        input: &str,
        sink: &mut impl OutputSink,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Exchange, SessionError> {
        self.start_reaper();
        let slot = self.slot(&spec.name)?;
        let mut guard = slot.lock().await;
        let fingerprint = spec.fingerprint();
        let stale = match guard.as_mut() {
            Some(live) => live.fingerprint != fingerprint || !alive(&mut live.child),
            None => false,
        };
        if stale {
            if let Some(mut live) = guard.take() {
                kill_group(live.pgid, &mut live.child, Ending::Interrupted).await;
            }
        }
        let mut started = false;
        if guard.is_none() {
            let live = start(helper, spec, fingerprint).await?;
            started = true;
            if let Setup::Failed(_) | Setup::Silent = live.setup {
                let mut live = live;
                let status = live
                    .child
                    .wait()
                    .await
                    .map_err(|e| SessionError::Launch(LaunchError::Pipe(e)))?;
                return Ok(Exchange {
                    text: String::new(),
                    interrupted: false,
                    ended: Some(finish(live, Ending::Exited(status))),
                    started,
                });
            }
            crate::session::lock(&self.inner.groups).insert(spec.name.clone(), live.pgid);
            *guard = Some(live);
        }
        let live = guard.as_mut().expect("a live session was just ensured");
        let token = format!(
            "__skillkernel_{}_{}__",
            std::process::id(),
            self.tokens.fetch_add(1, Ordering::Relaxed)
        );
        let outcome = talk(live, spec, input, &token, sink, timeout, cancel).await;
        live.exchanges += 1;
        live.last_used = Instant::now();
        match outcome {
            Ok((text, interrupted)) => Ok(Exchange {
                text,
                interrupted,
                ended: None,
                started,
            }),
            Err((text, ending)) => {
                let mut live = guard.take().expect("the session is still here");
                crate::session::lock(&self.inner.groups).remove(&spec.name);
                kill_group(live.pgid, &mut live.child, ending).await;
                let ending = match ending {
                    Ending::Exited(_) => match live.child.wait().await {
                        Ok(status) => Ending::Exited(status),
                        Err(_) => ending,
                    },
                    other => other,
                };
                Ok(Exchange {
                    text,
                    interrupted: ending == Ending::Interrupted,
                    ended: Some(finish(live, ending)),
                    started,
                })
            }
        }
    }

    /// The process groups of live sessions.
    pub fn process_groups(&self) -> Vec<i32> {
        crate::session::lock(&self.inner.groups)
            .values()
            .copied()
            .collect()
    }

    /// Ends the session `name`; false if there was none.
    pub async fn end(&self, name: &str) -> bool {
        crate::session::lock(&self.inner.groups).remove(name);
        let slot = crate::session::lock(&self.inner.slots).remove(name);
        match slot {
            Some(slot) => end_slot(&slot).await,
            None => false,
        }
    }

    /// Ends every session (shutdown).
    pub async fn end_all(&self) {
        crate::session::lock(&self.inner.groups).clear();
        let slots: Vec<Slot> = crate::session::lock(&self.inner.slots)
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in slots {
            end_slot(&slot).await;
        }
    }

    /// The sessions alive now.
    pub async fn list(&self) -> Vec<SessionInfo> {
        let slots: Vec<(String, Slot)> = crate::session::lock(&self.inner.slots)
            .iter()
            .map(|(n, s)| (n.clone(), Arc::clone(s)))
            .collect();
        let mut out = Vec::new();
        for (name, slot) in slots {
            match slot.try_lock() {
                Ok(guard) => out.extend(guard.as_ref().map(|live| info(&name, live))),
                Err(_) => out.push(SessionInfo {
                    name,
                    skill: String::new(),
                    pid: 0,
                    exchanges: 0,
                    idle_secs: 0,
                    busy: true,
                }),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The slot for `name`, making room (ending the least recently used
    /// idle session) when a new one would exceed the maximum.
    fn slot(&self, name: &str) -> Result<Slot, SessionError> {
        let mut slots = crate::session::lock(&self.inner.slots);
        if let Some(slot) = slots.get(name) {
            return Ok(Arc::clone(slot));
        }
        if slots.len() >= self.inner.max {
            let victim = slots
                .iter()
                .filter_map(|(n, s)| {
                    let g = s.try_lock().ok()?;
                    let used = g.as_ref().map(|l| l.last_used);
                    Some((n.clone(), used))
                })
                .min_by_key(|(_, used)| *used)
                .map(|(n, _)| n);
            let Some(victim) = victim else {
                return Err(SessionError::TooMany {
                    max: self.inner.max,
                });
            };
            crate::session::lock(&self.inner.groups).remove(&victim);
            if let Some(slot) = slots.remove(&victim) {
                tracing::info!(session = %victim, "ending the least recently used session to make room");
                tokio::spawn(async move {
                    end_slot(&slot).await;
                });
            }
        }
        let slot: Slot = Arc::new(Mutex::new(None));
        slots.insert(name.to_owned(), Arc::clone(&slot));
        Ok(slot)
    }

    /// Ends idle sessions past the idle timeout, every [`REAP_INTERVAL`],
    /// for as long as the sessions exist.
    fn start_reaper(&self) {
        if self.inner.reaper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REAP_INTERVAL);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let expired: Vec<(String, Slot)> = crate::session::lock(&inner.slots)
                    .iter()
                    .filter(|(_, s)| {
                        s.try_lock().is_ok_and(|g| {
                            g.as_ref()
                                .is_some_and(|l| l.last_used.elapsed() >= inner.idle_timeout)
                        })
                    })
                    .map(|(n, s)| (n.clone(), Arc::clone(s)))
                    .collect();
                for (name, slot) in expired {
                    crate::session::lock(&inner.slots).remove(&name);
                    crate::session::lock(&inner.groups).remove(&name);
                    tracing::info!(session = %name, "ending an idle session");
                    end_slot(&slot).await;
                }
            }
        });
    }
}

fn info(name: &str, live: &Live) -> SessionInfo {
    SessionInfo {
        name: name.to_owned(),
        skill: live.skill.clone(),
        pid: live.pgid,
        exchanges: live.exchanges,
        idle_secs: live.last_used.elapsed().as_secs(),
        busy: false,
    }
}

async fn end_slot(slot: &Slot) -> bool {
    let mut guard = slot.lock().await;
    match guard.take() {
        Some(mut live) => {
            kill_group(live.pgid, &mut live.child, Ending::Interrupted).await;
            true
        }
        None => false,
    }
}

fn alive(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

async fn start(
    helper: &Helper,
    spec: &SessionSpec,
    fingerprint: String,
) -> Result<Live, SessionError> {
    let mut spawned = helper.spawn(&spec.policy, &spec.argv, Stdin::Piped).await?;
    let setup = spawned.setup().await;
    let child_stdin = spawned.child.stdin.take();
    let child_stdout = spawned.child.stdout.take();
    let child_stderr = spawned.child.stderr.take();
    let (Some(stdin), Some(stdout)) = (child_stdin, child_stdout) else {
        return Err(SessionError::Input(std::io::Error::other(
            "the session's pipes were not created",
        )));
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let tail = Arc::new(StdMutex::new(Tail::new(STDERR_TAIL_BYTES)));
    if let Some(mut stderr) = child_stderr {
        let tail = Arc::clone(&tail);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8 * 1024];
            let mut carry = super::text::Utf8Carry::default();
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let text = carry.decode(&buf[..n]);
                crate::session::lock(&tail).push(&text);
                // Nobody listening between exchanges: the text is dropped
                // (the tail keeps the end of it).
                let _ = tx.send(text);
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
        setup,
        exchanges: 0,
        last_used: Instant::now(),
        started: Instant::now(),
    })
}

fn finish(live: Live, ending: Ending) -> Finished {
    let stderr_tail = crate::session::lock(&live.stderr_tail).text();
    Finished {
        setup: live.setup,
        ending,
        stderr_tail,
        output_bytes: 0,
        elapsed: live.started.elapsed(),
    }
}

/// One exchange on a live session: `Ok((answer, interrupted))`, or
/// `Err((partial answer, ending))` when the session must end.
async fn talk(
    live: &mut Live,
    spec: &SessionSpec,
    input: &str,
    token: &str,
    sink: &mut impl OutputSink,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(String, bool), (String, Ending)> {
    // Drop stderr written between exchanges.
    while live.stderr.try_recv().is_ok() {}
    let mut request = input.trim_end_matches('\n').to_owned();
    request.push('\n');
    if let Reply::Marker(command) = &spec.reply {
        // A blank line first ends an open block (Python's `def`, `for`).
        request.push('\n');
        request.push_str(&command.replace("{marker}", token));
        request.push('\n');
    }
    let exited = |text: String| Err((text, Ending::Exited(std::process::ExitStatus::default())));
    if live.stdin.write_all(request.as_bytes()).await.is_err() || live.stdin.flush().await.is_err()
    {
        return exited(String::new());
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut interrupted_at: Option<Instant> = None;
    let mut answer = String::new();
    let mut line = Vec::new();
    loop {
        let grace = async {
            match interrupted_at {
                Some(at) => tokio::time::sleep(INTERRUPT_GRACE.saturating_sub(at.elapsed())).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = live.stdout.read_until(b'\n', &mut line) => {
                match read {
                    Ok(0) | Err(_) => return exited(answer),
                    Ok(_) => {}
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
                    drain_stderr(live, sink).await;
                    sink.flush().await;
                    return Ok((answer, interrupted_at.is_some()));
                }
            }
            Some(text) = live.stderr.recv() => sink.output(Stream::Stderr, &text).await,
            _ = cancel.cancelled(), if interrupted_at.is_none() => {
                interrupted_at = Some(Instant::now());
                let _ = killpg(Pid::from_raw(live.pgid), Signal::SIGINT);
            }
            _ = grace => return Err((answer, Ending::Interrupted)),
            _ = deadline.as_mut() => return Err((answer, Ending::TimedOut)),
        }
    }
}

/// Passes on stderr that arrived with the answer (it may trail stdout by
/// a moment: the two pipes are read independently).
async fn drain_stderr(live: &mut Live, sink: &mut impl OutputSink) {
    tokio::task::yield_now().await;
    while let Ok(text) = live.stderr.try_recv() {
        sink.output(Stream::Stderr, &text).await;
    }
}
