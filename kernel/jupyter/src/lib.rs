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
//! `!commands`, and run by [`execute`] with an [`exec_context::Output`] that
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

pub mod artifact_id;
pub mod cell;
pub mod command;
pub mod complete;
pub mod complete_skill;
pub mod control;
mod dispatch;
pub mod errors;
pub mod exec_context;
pub mod execute;
pub mod health;
pub mod history;
mod inbound;
pub mod info;
pub mod inspect;
pub mod iopub;
mod json_answer;
pub mod live;
pub mod magics;
pub mod mcp_host;
mod mcp_request;
mod memory;
pub mod metrics;
pub mod metrics_page;
mod model_request;
pub mod operations;
pub mod prompt;
mod pull;
mod request_span;
mod sandbox_request;
pub mod session;
pub mod shell;
pub mod shutdown;
pub mod skill_actions;
mod skill_install;
mod skill_request;
pub mod skill_run;
mod skill_test;
pub mod status;
pub mod stdin;
pub mod store;
mod tool_steps;
mod typed_prompt;

use std::sync::Arc;
use std::time::Duration;

use skillkernel_protocol::{Signer, WireLimits};
use skillkernel_providers::{GenerationOptions, Registry};
use skillkernel_transport::KernelSockets;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use errors::KernelError;
pub use health::{HealthStatus, HealthThresholds};
pub use live::ShutdownSettings;
pub use session::Shared;
pub use shutdown::{Phase, ShutdownOrigin, ShutdownReport};
pub use skillkernel_providers as providers;
pub use store::{PersistConfig, PersistenceStatus, StoreError};

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
    /// How long each shutdown phase may take.
    pub shutdown: ShutdownSettings,
    /// Where the session is persisted; `None` keeps it in memory only.
    pub persistence: Option<PersistConfig>,
    /// The health monitor's sampling interval and thresholds (the
    /// daemon's `[health]` section); changed at runtime with
    /// [`KernelHandle::set_health_thresholds`].
    pub health: HealthThresholds,
    /// Where skills come from (`[skills]`); `None`: no skills.
    pub skills: Option<skillkernel_skills::service::SkillsSetup>,
    /// The sandbox helper and `[sandbox]` settings; `None`: `!command`
    /// cells and command and session skills are refused.
    pub sandbox: Option<skillkernel_sandbox::SandboxSetup>,
    /// Telemetry outlets the embedding process runs (trace export, the log
    /// file), reported in `%status`, the status reply and the metrics page.
    pub telemetry: Vec<Arc<skillkernel_stdx::outlet::Outlet>>,
    /// What MCP clients are offered beyond the skills (`[mcp.server]`).
    pub mcp: skillkernel_mcp::ServerSettings,
    /// The MCP servers whose tools skills and cells call
    /// (`[mcp.servers]`), each already checked.
    pub mcp_servers: std::collections::BTreeMap<String, skillkernel_mcp::ServerConfig>,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            kernel_name: "skillkernel".into(),
            command_timeout: Duration::from_secs(600),
            limits: WireLimits::default(),
            models: None,
            shutdown: ShutdownSettings::default(),
            persistence: None,
            health: HealthThresholds::default(),
            skills: None,
            sandbox: None,
            telemetry: Vec::new(),
            mcp: skillkernel_mcp::ServerSettings::default(),
            mcp_servers: Default::default(),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ExitReason {
    /// The client asked for a restart (`shutdown_request` with
    /// `restart: true`): the next start begins a fresh session.
    pub restart: bool,
    pub origin: ShutdownOrigin,
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

    /// Starts the shutdown coordinator, as `shutdown_request` does.
    pub fn shutdown(&self, origin: ShutdownOrigin) {
        self.shared.request_exit(ExitReason {
            restart: false,
            origin,
        });
    }

    /// Whether a shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shared.exit_requested()
    }

    /// Registers `cleanup` to run in the shutdown's Cleanup phase, in
    /// registration order (e.g. removing the connection and PID files).
    pub fn on_cleanup(&self, what: &str, cleanup: impl FnOnce() + Send + 'static) {
        skillkernel_stdx::lock(&self.shared.cleanups).push((what.to_owned(), Box::new(cleanup)));
    }

    /// Applies reloaded limits: new cells and messages use them.
    pub fn set_limits(&self, command_timeout: Duration, max_message_bytes: usize) {
        self.shared.update_live(|live| {
            live.command_timeout = command_timeout;
            live.limits.max_message_bytes = max_message_bytes;
        });
    }

    /// Applies reloaded shutdown timeouts.
    pub fn set_shutdown_settings(&self, settings: ShutdownSettings) {
        self.shared.update_live(|live| live.shutdown = settings);
    }

    /// Swaps the model backends (reloaded provider settings). Cells
    /// already generating finish on the backends they started with.
    pub fn set_models(&self, models: Option<Models>) {
        self.shared.withhold_model_keys(models.as_ref());
        self.shared.update_live(|live| live.models = models);
    }

    /// The model backends in use now.
    pub fn models(&self) -> Option<Models> {
        self.shared.models()
    }

    /// The work running now.
    pub fn operations(&self) -> Vec<operations::OperationInfo> {
        self.shared.operations.list()
    }

    /// The kernel's shared state (session, persistence).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Every metric the daemon keeps, in the Prometheus text format.
    pub fn metrics_page(&self) -> String {
        metrics_page::render(&self.shared)
    }

    /// See [`Shared::persistence_status`].
    pub fn persistence_status(&self) -> PersistenceStatus {
        self.shared.persistence_status()
    }

    /// See [`Shared::save_state`]; blocks on an fsync.
    pub fn save_state(&self) -> Result<(), StoreError> {
        self.shared.save_state()
    }

    /// Replaces the health monitor's thresholds and interval (a config
    /// reload); the next status report is classified against them.
    pub fn set_health_thresholds(&self, thresholds: HealthThresholds) {
        self.shared.health.set_thresholds(thresholds);
    }

    /// Re-reads every skill directory (SIGUSR1); with `changed` — a new
    /// `[skills]` section — reopens the registry with it first, keeping
    /// circuit breakers and metrics. **Blocking** (file I/O). Returns what
    /// changed, or `None` without skills.
    pub fn reload_skills(
        &self,
        changed: Option<skillkernel_skills::config::SkillsConfig>,
    ) -> Option<skillkernel_skills::registry::ReloadReport> {
        let current = self.shared.skills()?;
        let Some(config) = changed else {
            return Some(current.registry.reload_all());
        };
        let mut setup = self.shared.config.skills.clone()?;
        setup.config = config;
        let executor = Arc::clone(&current.executor);
        let conversations = current.conversations().clone();
        // The old registry lets go of its index and watcher before the new
        // one opens them (a run still holding it keeps it a little longer).
        self.shared.set_skills(None);
        drop(current);
        let sandbox = self.shared.sandbox();
        let skills =
            session::open_skills(&setup, Some(executor), conversations, sandbox.as_deref());
        let report = skills.registry.reload_all();
        self.shared.set_skills(Some(Arc::new(skills)));
        Some(report)
    }

    /// The kernel as an MCP server's host: what the daemon's Streamable
    /// HTTP endpoint serves (the same skills, models and sandbox as the
    /// notebook, each MCP session with its own state).
    pub fn mcp_host(&self) -> Arc<dyn skillkernel_mcp::Host> {
        Arc::new(mcp_host::KernelHost::new(&self.shared))
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
        let (shared, exit) = Shared::new(signer, config, iopub, stdin.sender);
        let shared = Arc::new(shared);
        if let Some(skills) = shared.skills() {
            skills
                .executor
                .set_sink(Arc::new(session::SkillStateRecorder(Arc::downgrade(
                    &shared,
                ))));
        }
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

    /// Waits until the kernel is asked to stop, runs the shutdown
    /// coordinator ([`shutdown`]), then stops its tasks.
    pub async fn wait(mut self) -> ShutdownReport {
        let reason = loop {
            if let Some(reason) = *self.exit.borrow_and_update() {
                break reason;
            }
            if self.exit.changed().await.is_err() {
                break ExitReason {
                    restart: false,
                    origin: ShutdownOrigin::Operator,
                };
            }
        };
        let report = shutdown::run(&self.handle.shared, reason).await;
        for task in &self.tasks {
            task.abort();
        }
        report
    }
}
