//! What the MCP server needs from the process that embeds it: the skills,
//! the models and the sandbox as they are *now* (a reload may replace any
//! of them), and the shutdown's bookkeeping.
//!
//! The kernel implements [`Host`] over its shared state; the tests of this
//! crate implement it over a registry of their own.

use std::sync::Arc;
use std::time::Duration;

use skillkernel_sandbox::Sandbox;
use skillkernel_skills::exec::RunContext;
use skillkernel_skills::service::Skills;
use tokio::sync::watch;

/// Held while an MCP request works; the host's shutdown waits for it.
pub type OperationGuard = Box<dyn Send + Sync>;

/// Why the host cannot serve a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRefusal {
    #[error("the kernel has no skills configured")]
    NoSkills,
    #[error("the kernel has no model backend configured")]
    NoModel,
    #[error("the kernel has no sandbox, so it runs no programs")]
    NoSandbox,
    #[error("the kernel is shutting down")]
    ShuttingDown,
}

/// The embedding process, as the MCP server sees it.
pub trait Host: Send + Sync + 'static {
    /// The skills now; `None` when the kernel has none.
    fn skills(&self) -> Option<Arc<Skills>>;

    /// Ticks when [`Host::skills`] starts returning another registry (a
    /// reload that changed `[skills]`).
    fn skills_replaced(&self) -> watch::Receiver<u64>;

    /// How a run of an MCP session reaches models now: the kernel's model
    /// registry and defaults, with usage recorded under `session`. A run
    /// that needs no model (`needs_model: false`) gets a context even when
    /// no backend is configured.
    fn run_context(&self, session: &str, needs_model: bool) -> Result<RunContext, HostRefusal>;

    /// The sandbox, if the kernel has one.
    fn sandbox(&self) -> Option<Arc<Sandbox>>;

    /// How long a command run through MCP may take (`command_timeout`).
    fn command_timeout(&self) -> Duration;

    /// Marks an MCP request as work in progress (`what` names it for the
    /// shutdown's report); `Err` once a shutdown has begun.
    fn begin_operation(&self, what: &str) -> Result<OperationGuard, HostRefusal>;

    /// A skill run through MCP ended (for the kernel's metrics).
    fn run_ended(&self, failed: bool);
}
