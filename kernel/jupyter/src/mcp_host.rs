//! The kernel as the MCP server's [`Host`]: its skills, models, sandbox
//! and shutdown, as they are at each call.
//!
//! Holds the kernel's state weakly: the bridge it serves lives in that
//! state, and a kernel that has gone serves nothing.

use std::sync::{Arc, Weak};
use std::time::Duration;

use skillkernel_mcp::{Host, HostRefusal, OperationGuard};
use skillkernel_providers::{GenerationOptions, ModelsConfig, Registry};
use skillkernel_sandbox::Sandbox;
use skillkernel_skills::exec::RunContext;
use skillkernel_skills::service::Skills;
use tokio::sync::watch;

use crate::session::Shared;

pub struct KernelHost {
    shared: Weak<Shared>,
    replaced: watch::Receiver<u64>,
}

impl KernelHost {
    pub fn new(shared: &Arc<Shared>) -> KernelHost {
        KernelHost {
            shared: Arc::downgrade(shared),
            replaced: shared.skills_replaced(),
        }
    }

    fn shared(&self) -> Result<Arc<Shared>, HostRefusal> {
        self.shared.upgrade().ok_or(HostRefusal::ShuttingDown)
    }
}

impl Host for KernelHost {
    fn skills(&self) -> Option<Arc<Skills>> {
        self.shared().ok()?.skills()
    }

    fn skills_replaced(&self) -> watch::Receiver<u64> {
        self.replaced.clone()
    }

    fn run_context(&self, session: &str, needs_model: bool) -> Result<RunContext, HostRefusal> {
        let shared = self.shared()?;
        match shared.models() {
            Some(models) => Ok(RunContext {
                registry: Arc::clone(&models.registry),
                default_model: shared.current_model().unwrap_or_default(),
                options: models.options.clone(),
                sandbox: shared.sandbox(),
                session: session.to_owned(),
                external: shared.external_tools(),
            }),
            None if !needs_model => Ok(RunContext {
                registry: Arc::new(Registry::new(Vec::new(), ModelsConfig::default())),
                default_model: String::new(),
                options: GenerationOptions::default(),
                sandbox: shared.sandbox(),
                session: session.to_owned(),
                external: shared.external_tools(),
            }),
            None => Err(HostRefusal::NoModel),
        }
    }

    fn sandbox(&self) -> Option<Arc<Sandbox>> {
        self.shared().ok()?.sandbox()
    }

    fn command_timeout(&self) -> Duration {
        self.shared()
            .map(|s| s.command_timeout())
            .unwrap_or(Duration::from_secs(600))
    }

    fn begin_operation(&self, what: &str) -> Result<OperationGuard, HostRefusal> {
        let shared = self.shared()?;
        if shared.exit_requested() {
            return Err(HostRefusal::ShuttingDown);
        }
        Ok(Box::new(shared.operations.begin("mcp", what)))
    }

    fn run_ended(&self, failed: bool) {
        if let Ok(shared) = self.shared() {
            shared.metrics.run_ended(failed);
        }
    }
}
