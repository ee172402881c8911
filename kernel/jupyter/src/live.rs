//! Settings that change while the kernel runs (config reload).
//!
//! [`crate::KernelConfig`] is what the kernel started with; the parts an
//! operator may change with SIGHUP/SIGUSR1 live here behind a lock that
//! is only ever held to copy a value out, so a reload never waits for a
//! running cell and a running cell keeps the settings it started with.

use std::time::Duration;

use skillkernel_protocol::WireLimits;

use crate::Models;

/// How long the shutdown coordinator waits in each phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShutdownSettings {
    /// WaitingForOperations: how long running work may go on after a
    /// SIGTERM before it is cancelled.
    pub grace: Duration,
    /// Bound on each later phase, and on cancelled work to unwind; past
    /// it the shutdown goes on, forced.
    pub operation_timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings {
            grace: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(5),
        }
    }
}

/// The reloadable settings.
#[derive(Debug, Clone)]
pub struct Live {
    pub command_timeout: Duration,
    pub limits: WireLimits,
    pub shutdown: ShutdownSettings,
    pub models: Option<Models>,
}
