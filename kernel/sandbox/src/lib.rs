//! The sandbox for `!command` cells and command and session skills.
//!
//! * The contract shared with the `skillkernel sandbox-exec` helper (data):
//!   what a sandboxed program may do ([`SandboxPolicy`], built from a
//!   skill's manifest by [`SandboxPolicy::from_manifest`]), what the helper
//!   reports back ([`SetupReport`], [`HostSupport`]) and its exit codes.
//! * The parent's side: [`launch`] spawns the helper with the policy and
//!   status pipes, [`run`] drives one program to its end (output streamed
//!   and capped, timeout, interrupt, group kill), [`verdict`] says what the
//!   ending means, [`audit`] writes security events, [`sessions`] keeps
//!   session skills' processes, [`resident`] keeps servers the kernel
//!   talks to (MCP servers), [`deny`] keeps secrets and the kernel's own
//!   files out whatever is granted, [`proxy`] lets programs reach the
//!   hosts they are granted and nothing else, [`cgroup`] removes the per-run pids
//!   cgroups root helpers make, and [`service::Sandbox`] ties them
//!   together for the kernel.
//!
//! This module must never apply a layer itself: the kernel runs inside a
//! multi-threaded tokio process, where rlimits, Landlock and seccomp would
//! hit the daemon (or one random thread of it). The daemon binary
//! re-executes itself as the single-threaded helper for that.

pub mod audit;
pub mod cgroup;
pub mod deny;
pub mod helper;
pub mod launch;
pub mod manifest;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod resident;
pub mod run;
pub mod service;
pub mod sessions;
pub mod status;
mod text;
pub mod toolchains;
pub mod verdict;

pub use manifest::{ManifestGrants, ManifestPolicyError};
pub use policy::{Limits, SandboxPolicy, DEFAULT_ENV_ALLOW, DEFAULT_READ_PATHS};
pub use report::{
    HiddenOutcome, HostSupport, LandlockOutcome, LayerSupport, ProcessLimitEnforcement,
    ProcessLimitOutcome, SetupFailure, SetupReport, SetupStage, StatusLine, EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND, EXIT_SETUP_FAILED,
};
pub use service::{Sandbox, SandboxConfig, SandboxSetup};
