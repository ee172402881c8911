//! The shutdown coordinator: six phases, each logged with its duration.
//!
//! 1. **Initiated** — the kernel stops taking work: new `execute_request`s
//!    and `model_request`s get a `KernelShuttingDown` error reply.
//! 2. **WaitingForOperations** — running work (held by
//!    [`crate::operations::OperationGuard`]s) may finish. After a client's
//!    `shutdown_request` it is cancelled at once (the user asked for the
//!    kernel to go); after SIGTERM it gets the grace period first, then is
//!    cancelled and given the operation timeout to unwind.
//! 3. **SavingState** — the session is flushed to disk, bounded by the
//!    operation timeout; what was written as work happened stays saved if
//!    the flush cannot finish (the forced path's partial save).
//! 4. **NotifyingClients** — the requester gets its `shutdown_reply`;
//!    everyone else learns of the shutdown from the same reply on IOPub.
//! 5. **Cleanup** — `!command` process groups are killed, the skill
//!    registry is closed (watcher stopped, index flushed), IOPub is
//!    flushed, and the embedding process's cleanups run (connection file,
//!    PID file).
//! 6. **Complete**.
//!
//! A phase that runs out of time marks the shutdown *forced*; the
//! coordinator never hangs on one, so a supervisor's stop timeout is not
//! needed to end the process.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use skillkernel_protocol::content::{ReplyStatus, ShutdownReply};
use skillkernel_protocol::RequestType;

use crate::session::Shared;
use crate::ExitReason;
use skillkernel_stdx::lock;

/// How long the last IOPub messages (and the requester's reply) get to
/// reach the clients.
const IOPUB_DRAIN: Duration = Duration::from_secs(1);

/// The phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    Initiated,
    WaitingForOperations,
    SavingState,
    NotifyingClients,
    Cleanup,
    Complete,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, Serialize)]
pub struct ShutdownReport {
    pub reason: ExitReason,
    /// Each phase with how long it took.
    pub phases: Vec<(Phase, Duration)>,
    /// A phase ran out of time (or work had to be cancelled after the
    /// grace period, or the state could not be saved).
    pub forced: bool,
    pub state_saved: bool,
}

impl ShutdownReport {
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }
}

struct Timeline {
    phases: Vec<(Phase, Duration)>,
    current: Phase,
    since: Instant,
}

impl Timeline {
    fn start() -> Timeline {
        tracing::info!(phase = %Phase::Initiated, "shutdown phase started");
        Timeline {
            phases: Vec::new(),
            current: Phase::Initiated,
            since: Instant::now(),
        }
    }

    /// Ends the current phase (logging its duration) and starts `next`.
    fn next(&mut self, next: Phase) {
        let took = self.since.elapsed();
        tracing::info!(
            phase = %self.current,
            duration_ms = took.as_secs_f64() * 1000.0,
            "shutdown phase done"
        );
        self.phases.push((self.current, took));
        self.current = next;
        self.since = Instant::now();
        if next != Phase::Complete {
            tracing::info!(phase = %next, "shutdown phase started");
        }
    }
}

/// Runs the six phases. Called by [`crate::Kernel::wait`] once a shutdown
/// was requested; the kernel's tasks are still running (so a cell can
/// finish and be answered), and are stopped by the caller afterwards.
pub(crate) async fn run(shared: &Arc<Shared>, reason: ExitReason) -> ShutdownReport {
    let settings = shared.shutdown_settings();
    let mut timeline = Timeline::start();
    let mut forced = false;
    tracing::info!(?reason, "shutting down; new work is refused");

    timeline.next(Phase::WaitingForOperations);
    let ops = &shared.operations;
    if reason.origin == ShutdownOrigin::Client {
        shared.interrupt();
    } else if ops.count() > 0 {
        tracing::info!(
            running = ops.count(),
            grace_secs = settings.grace.as_secs_f64(),
            "waiting for running operations"
        );
    }
    let grace = if reason.origin == ShutdownOrigin::Client {
        settings.operation_timeout
    } else {
        settings.grace
    };
    if !ops.drained(grace).await {
        tracing::warn!(
            running = ops.count(),
            "operations still running after the grace period; cancelling them"
        );
        forced = true;
        shared.interrupt();
        if !ops.drained(settings.operation_timeout).await {
            tracing::warn!(
                still_running = ?ops.list(),
                "operations did not stop; shutting down without them"
            );
        }
    }

    timeline.next(Phase::SavingState);
    let saver = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || shared.save_state())
    };
    let state_saved = match tokio::time::timeout(settings.operation_timeout, saver).await {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(e))) => {
            tracing::error!(error = %e, "could not save the session state; what was written as cells ran is kept");
            false
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "saving the session state failed");
            false
        }
        Err(_) => {
            tracing::error!(
                timeout_secs = settings.operation_timeout.as_secs_f64(),
                "saving the session state timed out; partial save"
            );
            false
        }
    };
    forced |= !state_saved;

    timeline.next(Phase::NotifyingClients);
    let reply = ShutdownReply {
        status: ReplyStatus::Ok,
        restart: reason.restart,
    };
    let requester = lock(&shared.shutdown_requester).take();
    let notify = async {
        if let Some((request, channel)) = &requester {
            shared
                .reply(
                    channel.as_ref(),
                    request,
                    RequestType::Shutdown.reply(),
                    reply,
                )
                .await;
        }
        // Other clients learn of it on IOPub, as ipykernel tells them.
        shared
            .iopub
            .publish(
                requester.as_ref().map(|(r, _)| r),
                RequestType::Shutdown.reply(),
                reply,
            )
            .await;
        shared.iopub.flush().await;
        // The process may end right after: give the last messages (this
        // one on IOPub, the requester's reply) a moment to leave. A client
        // that is not reading costs the whole wait.
        let deadline = tokio::time::Instant::now() + IOPUB_DRAIN;
        let written = || {
            shared.iopub.all_written() && requester.as_ref().is_none_or(|(_, c)| c.all_written())
        };
        while !written() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(settings.operation_timeout, notify)
        .await
        .is_err()
    {
        tracing::warn!("notifying clients timed out");
        forced = true;
    }

    timeline.next(Phase::Cleanup);
    // MCP servers first, gently (an HTTP server's session is ended);
    // the sandbox's kill then gets any stdio server that did not stop.
    if tokio::time::timeout(
        std::time::Duration::from_secs(3),
        shared.mcp_clients().stop_all(),
    )
    .await
    .is_err()
    {
        tracing::warn!("stopping MCP servers timed out");
    }
    shared.kill_children();
    // The skill registry stops its watcher and flushes its index here, not
    // after the PID file is gone: a supervisor that waits for the PID
    // file's lock sees a process that is all but exited.
    shared.set_skills(None);
    let cleanups = std::mem::take(&mut *lock(&shared.cleanups));
    for (what, cleanup) in cleanups {
        tracing::debug!(%what, "cleanup");
        cleanup();
    }

    timeline.next(Phase::Complete);
    let report = ShutdownReport {
        reason,
        phases: timeline.phases,
        forced,
        state_saved,
    };
    tracing::info!(
        phase = %Phase::Complete,
        total_ms = report.total().as_secs_f64() * 1000.0,
        forced,
        state_saved,
        "shutdown complete"
    );
    report
}

/// Who asked for the shutdown; it decides how running work is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ShutdownOrigin {
    /// A `shutdown_request`: running work is cancelled at once.
    Client,
    /// The operator (SIGTERM, `skillkernel stop`): running work gets the
    /// grace period.
    Operator,
    /// The launching process is gone.
    ParentExited,
}
