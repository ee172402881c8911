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
//! the session lives on); a timeout, the output cap, a dead program, a
//! changed skill or an exchange abandoned half-way ends the session (see
//! [`process`] for one exchange). At most `max_sessions` run at once: the least
//! recently used idle one makes room. Idle sessions end after the idle
//! timeout; all end at unload and shutdown.

mod process;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use self::process::{Ended, Live};
use super::launch::{Helper, LaunchError, Setup};
use super::run::{kill_group, Ending, Finished, GroupGuard, OutputSink};
use super::SandboxPolicy;

/// How often idle sessions are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(10);

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
    #[error("lost track of the session's process: {0}")]
    Lost(std::io::Error),
}

/// How one exchange ended. `finished` is set when the session ended with it.
#[derive(Debug)]
pub struct Exchange {
    /// The answer (stdout before the marker).
    pub text: String,
    pub interrupted: bool,
    /// The session is gone: how it ended, for the verdict.
    pub ended: Option<Finished>,
}

type Slot = Arc<Mutex<Option<Live>>>;

struct Inner {
    slots: StdMutex<HashMap<String, Slot>>,
    /// Process groups of live sessions, for a synchronous kill at exit.
    groups: StdMutex<HashSet<i32>>,
    max: usize,
    max_output_bytes: u64,
    idle_timeout: Duration,
    reaper_started: std::sync::atomic::AtomicBool,
}

/// Every session of one kernel.
pub struct Sessions {
    inner: Arc<Inner>,
    tokens: AtomicU64,
}

impl Sessions {
    /// At most `max` sessions, each ended after `idle_timeout` unused; one
    /// exchange may write `max_output_bytes` (stdout and stderr).
    pub fn new(max: usize, idle_timeout: Duration, max_output_bytes: u64) -> Self {
        Sessions {
            inner: Arc::new(Inner {
                slots: StdMutex::new(HashMap::new()),
                groups: StdMutex::new(HashSet::new()),
                max: max.max(1),
                max_output_bytes,
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
        let slot = self.locked_slot(&spec.name).await?;
        let mut guard = slot;
        let fingerprint = spec.fingerprint();
        let stale = match guard.as_mut() {
            Some(live) => live.fingerprint != fingerprint || live.in_exchange || !live.alive(),
            None => false,
        };
        if stale {
            if let Some(live) = guard.take() {
                self.end_live(live).await;
            }
        }
        if guard.is_none() {
            let mut live = Live::start(helper, spec, fingerprint).await?;
            if let Setup::Failed(_) | Setup::Silent = live.setup {
                let status = live.child.wait().await.map_err(SessionError::Lost)?;
                kill_group(live.pgid, &mut live.child, Ending::Exited(status)).await;
                return Ok(Exchange {
                    text: String::new(),
                    interrupted: false,
                    ended: Some(live.finish(Ending::Exited(status), 0, Duration::ZERO)),
                });
            }
            skillkernel_stdx::lock(&self.inner.groups).insert(live.pgid);
            *guard = Some(live);
        }
        let live = guard.as_mut().expect("a live session was just ensured");
        let token = format!(
            "__skillkernel_{}_{}__",
            std::process::id(),
            self.tokens.fetch_add(1, Ordering::Relaxed)
        );
        let began = Instant::now();
        // Dropped half-way (an outer timeout), the exchange leaves the
        // process out of step: kill it, and the next exchange restarts it.
        live.in_exchange = true;
        let dropped = GroupGuard::new(live.pgid);
        let outcome = live
            .talk(
                spec,
                input,
                &token,
                sink,
                timeout,
                self.inner.max_output_bytes,
                cancel,
            )
            .await;
        dropped.disarm();
        live.in_exchange = false;
        live.exchanges += 1;
        live.last_used = Instant::now();
        match outcome {
            Ok((text, interrupted)) => Ok(Exchange {
                text,
                interrupted,
                ended: None,
            }),
            Err(Ended {
                text,
                ending,
                output_bytes,
            }) => {
                let mut live = guard.take().expect("the session is still here");
                skillkernel_stdx::lock(&self.inner.groups).remove(&live.pgid);
                kill_group(live.pgid, &mut live.child, ending).await;
                let ending = match ending {
                    Ending::Exited(_) => match live.child.wait().await {
                        Ok(status) => Ending::Exited(status),
                        Err(_) => ending,
                    },
                    other => other,
                };
                let elapsed = began.elapsed();
                Ok(Exchange {
                    text,
                    interrupted: ending == Ending::Interrupted,
                    ended: Some(live.finish(ending, output_bytes, elapsed)),
                })
            }
        }
    }

    /// The slot of `name`, locked, and still the one registered under the
    /// name (an `end` may have removed it while this waited for the lock).
    async fn locked_slot(
        &self,
        name: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<Live>>, SessionError> {
        loop {
            let slot = self.slot(name)?;
            let guard = Arc::clone(&slot).lock_owned().await;
            let current = skillkernel_stdx::lock(&self.inner.slots)
                .get(name)
                .is_some_and(|s| Arc::ptr_eq(s, &slot));
            if current {
                return Ok(guard);
            }
        }
    }

    /// Kills a session's group and forgets it.
    async fn end_live(&self, mut live: Live) {
        kill_group(live.pgid, &mut live.child, Ending::Interrupted).await;
        skillkernel_stdx::lock(&self.inner.groups).remove(&live.pgid);
    }

    async fn end_slot(&self, slot: &Slot) -> bool {
        end_slot(&self.inner, slot).await
    }

    /// The process groups of live sessions.
    pub fn process_groups(&self) -> Vec<i32> {
        skillkernel_stdx::lock(&self.inner.groups)
            .iter()
            .copied()
            .collect()
    }

    /// Ends the session `name`; false if there was none.
    pub async fn end(&self, name: &str) -> bool {
        let slot = skillkernel_stdx::lock(&self.inner.slots).remove(name);
        match slot {
            Some(slot) => self.end_slot(&slot).await,
            None => false,
        }
    }

    /// The sessions alive now.
    pub fn list(&self) -> Vec<SessionInfo> {
        let slots: Vec<(String, Slot)> = skillkernel_stdx::lock(&self.inner.slots)
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
        let mut slots = skillkernel_stdx::lock(&self.inner.slots);
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
            if let Some(slot) = slots.remove(&victim) {
                tracing::info!(session = %victim, "ending the least recently used session to make room");
                let inner = Arc::clone(&self.inner);
                tokio::spawn(async move {
                    end_slot(&inner, &slot).await;
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
                let expired: Vec<(String, Slot)> = skillkernel_stdx::lock(&inner.slots)
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
                    skillkernel_stdx::lock(&inner.slots).remove(&name);
                    tracing::info!(session = %name, "ending an idle session");
                    end_slot(&inner, &slot).await;
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

/// Ends the session in `slot` (waiting for a running exchange to finish).
async fn end_slot(inner: &Inner, slot: &Slot) -> bool {
    let mut guard = slot.lock().await;
    match guard.take() {
        Some(mut live) => {
            kill_group(live.pgid, &mut live.child, Ending::Interrupted).await;
            skillkernel_stdx::lock(&inner.groups).remove(&live.pgid);
            true
        }
        None => false,
    }
}
