//! Signals, bridged into kernel requests by one task.
//!
//! signal-hook's handler only records the signal; everything happens here,
//! on the runtime:
//!
//! | signal | action |
//! |---|---|
//! | SIGTERM | the shutdown coordinator (running work gets the grace period) |
//! | SIGINT | interrupt the running cell, as `interrupt_request` |
//! | SIGHUP, SIGUSR1 | reload the configuration |
//! | SIGUSR2 | write a state dump |
//!
//! SIGPIPE stays ignored, as Rust's runtime sets it: a client that goes
//! away mid-write is an error on that socket, not the daemon's death.
//!
//! Reloads and dumps each run on their own worker that holds at most one
//! pending request: a storm of signals while one runs leads to exactly one
//! more run, never to two at once nor to a queue.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use serde_json::{json, Value};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_tokio::Signals;
use skillkernel_kernel::{KernelHandle, ShutdownOrigin};
use skillkernel_protocol::ConnectionInfo;
use tokio::sync::Notify;

use crate::dump;
use crate::reload::Reloader;

/// The signals the daemon handles.
pub const HANDLED: [i32; 5] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2];

/// What the signals act on.
pub struct Operator {
    kernel: KernelHandle,
    reloader: Mutex<Reloader>,
    connection: Value,
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    dumps: Mutex<u64>,
}

impl Operator {
    pub fn new(
        kernel: KernelHandle,
        reloader: Reloader,
        info: &ConnectionInfo,
        connection_file: &Path,
    ) -> Operator {
        let mut connection = serde_json::to_value(info).unwrap_or(Value::Null);
        connection["file"] = json!(connection_file);
        Operator {
            kernel,
            reloader: Mutex::new(reloader),
            connection,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            dumps: Mutex::new(0),
        }
    }

    fn reload(&self) {
        let mut reloader = self.reloader.lock().unwrap_or_else(|p| p.into_inner());
        // The outcome is logged by the reloader either way.
        let _ = reloader.reload();
    }

    /// Writes a dump; returns its path.
    fn dump(&self) -> Result<PathBuf, dump::DumpError> {
        let began = Instant::now();
        let mut dumps = self.dumps.lock().unwrap_or_else(|p| p.into_inner());
        *dumps += 1;
        let (value, state_dir) = {
            let reloader = self.reloader.lock().unwrap_or_else(|p| p.into_inner());
            let config = reloader.running();
            let ctx = dump::DumpContext {
                started_at: self.started_at,
                uptime_secs: self.started.elapsed().as_secs_f64(),
                config: serde_json::to_value(config).unwrap_or(Value::Null),
                config_files: &reloader.files,
                connection: self.connection.clone(),
                reloads: reloader.applied,
                last_reload_error: reloader.last_error.as_deref(),
                dumps: *dumps,
            };
            (
                dump::assemble(ctx, self.kernel.status_report()),
                config.state_dir(),
            )
        };
        let path = dump::write(&state_dir, value)?;
        tracing::info!(
            path = %path.display(),
            took_ms = began.elapsed().as_secs_f64() * 1000.0,
            "state dump written"
        );
        Ok(path)
    }
}

/// Runs `job` on a blocking thread for each wake-up of `pending`; wake-ups
/// that arrive while it runs collapse into one more run.
async fn coalescing_worker(pending: Arc<Notify>, operator: Arc<Operator>, job: fn(&Operator)) {
    loop {
        pending.notified().await;
        let operator = operator.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || job(&operator)).await {
            tracing::error!(error = %e, "signal job failed");
        }
    }
}

/// Turns signals into actions until the stream ends.
pub async fn serve(mut signals: Signals, operator: Operator) {
    let operator = Arc::new(operator);
    let reloads = Arc::new(Notify::new());
    let dumps = Arc::new(Notify::new());
    let workers = [
        tokio::spawn(coalescing_worker(
            reloads.clone(),
            operator.clone(),
            Operator::reload,
        )),
        tokio::spawn(coalescing_worker(dumps.clone(), operator.clone(), |op| {
            if let Err(e) = op.dump() {
                tracing::error!("{e}");
            }
        })),
    ];
    while let Some(signal) = signals.next().await {
        match signal {
            SIGTERM => {
                tracing::info!("SIGTERM: shutting down");
                operator.kernel.shutdown(ShutdownOrigin::Operator);
            }
            SIGINT => {
                tracing::info!("SIGINT: interrupting the running cell");
                operator.kernel.interrupt();
            }
            SIGHUP | SIGUSR1 => {
                tracing::info!(signal, "reload requested");
                // Notify keeps one permit: requests during a reload coalesce.
                reloads.notify_one();
            }
            SIGUSR2 => {
                tracing::debug!("SIGUSR2: state dump requested");
                dumps.notify_one();
            }
            _ => {}
        }
    }
    for worker in workers {
        worker.abort();
    }
}
