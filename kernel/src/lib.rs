//! The integrated skillkernel: one kernel that answers the Jupyter shell,
//! control and stdin channels and publishes on IOPub.
//!
//! # Bird's-eye view
//!
//! [`Kernel::start`] takes the bound [`KernelSockets`] and spawns, on the
//! caller's tokio runtime:
//!
//! * a **shell reader** that verifies and queues requests, and a **shell
//!   executor** that handles them strictly in order ([`shell`]);
//! * a **control loop** beside it that answers `interrupt_request`,
//!   `shutdown_request` and `kernel_info_request` even while a cell runs
//!   ([`control`]);
//! * a **stdin reader** that routes `input_reply`s to the cell waiting for
//!   them ([`stdin`]);
//! * a **health monitor** thread that samples the process and its host
//!   for the status report ([`health`], [`status`]);
//!
//! A cell is parsed by [`cell`] into a prompt, line magics, a cell magic or
//! `!commands`, and run by [`execute`] with an [`execute::Output`] that
//! publishes what it produces and a cancellation token that an interrupt
//! trips.
//!
//! # What this crate must never do
//!
//! * Open sockets itself or know ZeroMQ: it sees frames through the
//!   `transport` traits, so the in-process transport tests it unchanged.
//! * Block the IO runtime: child processes are awaited asynchronously, and
//!   future model inference runs on its own threads.
//! * Die on bad input: a malformed, oversized or wrongly signed message is
//!   logged and dropped; an unknown request gets an error reply.

pub mod cell;
pub mod complete;
pub mod control;
mod dispatch;
pub mod errors;
pub mod execute;
pub mod health;
pub mod history;
pub mod info;
pub mod inspect;
pub mod iopub;
pub mod magics;
mod memory;
mod model_request;
pub mod prompt;
mod pull;
pub mod session;
pub mod shell;
pub mod status;
pub mod stdin;

use std::sync::Arc;
use std::time::Duration;

use skillkernel_protocol::{Signer, WireLimits};
use skillkernel_providers::{GenerationOptions, Registry};
use skillkernel_transport::KernelSockets;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use errors::KernelError;
pub use health::{HealthStatus, HealthThresholds};
pub use session::Shared;
pub use skillkernel_providers as providers;

/// Settings the kernel runs with.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// Name shown in `kernel_info_reply` and written to connection files.
    pub kernel_name: String,
    /// `!command` cells are killed after this long.
    pub command_timeout: Duration,
    /// Bounds on inbound messages.
    pub limits: WireLimits,
    /// Where prompt cells get their model; `None` means no model backend.
    pub models: Option<Models>,
    /// The health monitor's sampling interval and thresholds (the
    /// daemon's `[health]` section); changed at runtime with
    /// [`KernelHandle::set_health_thresholds`].
    pub health: HealthThresholds,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            kernel_name: "skillkernel".into(),
            command_timeout: Duration::from_secs(600),
            limits: WireLimits::default(),
            models: None,
            health: HealthThresholds::default(),
        }
    }
}

/// The model backends prompt cells use.
#[derive(Clone)]
pub struct Models {
    /// Every configured backend, with routing and the response cache.
    pub registry: Arc<Registry>,
    /// What a session starts with — a model, `name@backend` or a routing
    /// profile (`%model use` changes it).
    pub default_model: String,
    /// Sampling and length settings for prompt cells.
    pub options: GenerationOptions,
    /// The system message that opens every conversation, if any.
    pub system_prompt: Option<String>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field(
                "backends",
                &self
                    .registry
                    .backends()
                    .iter()
                    .map(|p| p.backend())
                    .collect::<Vec<_>>(),
            )
            .field("default_model", &self.default_model)
            .finish()
    }
}

/// Why the kernel stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// A client (or the operator) asked for shutdown; `restart` as requested.
    Shutdown { restart: bool },
}

/// Steers a running kernel from outside the wire protocol (signals).
#[derive(Clone)]
pub struct KernelHandle {
    shared: Arc<Shared>,
}

impl KernelHandle {
    /// Interrupts the running cell, as `interrupt_request` does.
    pub fn interrupt(&self) {
        self.shared.interrupt();
    }

    /// Asks the kernel to stop, as `shutdown_request` does.
    pub fn shutdown(&self, restart: bool) {
        self.shared.request_exit(ExitReason::Shutdown { restart });
    }

    /// Replaces the health monitor's thresholds and interval (a config
    /// reload); the next status report is classified against them.
    pub fn set_health_thresholds(&self, thresholds: HealthThresholds) {
        self.shared.health.set_thresholds(thresholds);
    }

    /// The kernel's status report as JSON, as `status_request` serves it
    /// (without `status: "ok"`); see [`status::report`].
    pub fn status_report(&self) -> serde_json::Value {
        status::report(&self.shared)
    }
}

/// A started kernel.
pub struct Kernel {
    pub handle: KernelHandle,
    exit: watch::Receiver<Option<ExitReason>>,
    tasks: Vec<JoinHandle<()>>,
    _heartbeat: skillkernel_transport::HeartbeatGuard,
}

impl Kernel {
    /// Starts serving on `sockets`. Must be called inside a tokio runtime.
    pub fn start(sockets: KernelSockets, signer: Signer, config: KernelConfig) -> Kernel {
        let KernelSockets {
            shell,
            control,
            stdin,
            iopub,
            heartbeat,
        } = sockets;
        let (shared, exit) = Shared::new(signer, config, iopub.sender, stdin.sender);
        let shared = Arc::new(shared);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(stdin::read_replies(
            shared.clone(),
            stdin.receiver,
        )));
        tasks.push(tokio::spawn(control::serve(shared.clone(), control)));
        tasks.extend(shell::serve(shared.clone(), shell));
        Kernel {
            handle: KernelHandle { shared },
            exit,
            tasks,
            _heartbeat: heartbeat,
        }
    }

    /// Waits until the kernel is asked to stop, then stops its tasks.
    pub async fn wait(mut self) -> ExitReason {
        let reason = loop {
            if let Some(reason) = *self.exit.borrow_and_update() {
                break reason;
            }
            if self.exit.changed().await.is_err() {
                break ExitReason::Shutdown { restart: false };
            }
        };
        // Let in-flight IOPub (the shutdown notice) reach the socket.
        self.handle.shared.iopub.flush().await;
        for task in &self.tasks {
            task.abort();
        }
        self.handle.shared.kill_children();
        reason
    }
}
