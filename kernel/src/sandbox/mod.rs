//! The sandbox contract shared by the kernel and the `skillkernel
//! sandbox-exec` helper: what a sandboxed program may do ([`SandboxPolicy`],
//! built from a skill's manifest by [`SandboxPolicy::from_manifest`]), what
//! the helper reports back ([`SetupReport`], [`HostSupport`]) and the
//! exit codes it uses.
//!
//! This module is data only. It must never apply a layer itself: the kernel
//! runs inside a multi-threaded tokio process, where rlimits, Landlock and
//! seccomp would hit the daemon (or one random thread of it). The daemon
//! binary re-executes itself as the single-threaded helper for that.

pub mod manifest;
pub mod policy;
pub mod report;

pub use manifest::ManifestPolicyError;
pub use policy::{Limits, SandboxPolicy, DEFAULT_ENV_ALLOW, DEFAULT_READ_PATHS};
pub use report::{
    HostSupport, LandlockOutcome, LayerSupport, SetupFailure, SetupReport, SetupStage, StatusLine,
    EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED,
};
