//! What the `sandbox-exec` helper tells its parent.
//!
//! **Status protocol.** The parent passes `--status-fd N` (a pipe's write
//! end, inherited). The helper writes one JSON [`StatusLine`] per line:
//! `{"event":"applied",…}` once every layer is in place, just before
//! `execve`, then the descriptor closes on exec (it is marked close-on-exec
//! like every descriptor above 2). If set-up or `execve` fails it writes
//! `{"event":"failed",…}` and exits with [`EXIT_SETUP_FAILED`],
//! [`EXIT_NOT_EXECUTABLE`] or [`EXIT_NOT_FOUND`] (the `env(1)` convention).
//! So the parent reads the pipe to EOF: `applied` and no `failed` means the
//! program runs confined, and any exit status after that is the program's.
//! Without `--status-fd`, a failure is written to stderr as
//! `skillkernel sandbox-exec: {json}` and success is silent.
//!
//! **Probe.** `skillkernel sandbox-exec --probe` prints one [`HostSupport`]
//! JSON object: which layers this host can enforce and why not.
//!
//! Reports name environment variables, never their values.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The helper could not set up the sandbox (bad policy, a layer failed,
/// Landlock required but unavailable). Nothing of the program ran.
pub const EXIT_SETUP_FAILED: u8 = 125;
/// The program exists but could not be executed (permissions, Landlock).
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// The program was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// One line on the status descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
// One line per command, parsed once: boxing the report would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum StatusLine {
    Applied(SetupReport),
    Failed(SetupFailure),
}

/// The layers in place when the program was executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupReport {
    pub program: String,
    /// `new_session` (the helper called `setsid`) or `group_leader` (the
    /// parent already made it a process-group leader). Either way the
    /// program's process group id is the helper's pid.
    pub process_group: String,
    /// The rlimits set, by name (`RLIMIT_CPU` …) with their values.
    pub rlimits: Vec<(String, u64)>,
    /// Whether `limits.processes` is enforced, and by what.
    pub processes: ProcessLimitOutcome,
    pub no_new_privs: bool,
    pub landlock: LandlockOutcome,
    /// How the denied paths inside grants were kept out.
    #[serde(default)]
    pub hidden: HiddenOutcome,
    /// Network by host: the run's network namespace (`privileged` or
    /// `user`) holding only `lo` and the bridge to the proxy.
    #[serde(default)]
    pub network_namespace: Option<String>,
    /// `network_denied` (network and process-group walls) or
    /// `network_allowed` (network granted: the process-group wall only,
    /// `setsid`/`setpgid` refused so the program stays in its group).
    pub seccomp: String,
    /// Names of the variables the program received.
    pub env: Vec<String>,
}

/// How far Landlock could be enforced, and why not further.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockOutcome {
    /// `fully_enforced`, `partially_enforced` or `not_enforced`.
    pub status: String,
    /// The ABI the kernel offers (0: none).
    pub abi: u32,
    /// Does Landlock also deny TCP connect/bind (ABI ≥ 4, network denied)?
    pub tcp_denied: bool,
    /// Allow-listed paths that do not exist on this host (no rule made).
    pub missing_paths: Vec<PathBuf>,
    /// Why the status is not `fully_enforced`.
    pub reason: Option<String>,
}

/// How the policy's denied paths that lie inside a grant were kept out
/// (denied paths outside every grant need nothing: Landlock never grants
/// them). Empty when no denied path lies inside a grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenOutcome {
    /// Covered by a mount in the run's own mount namespace: an empty
    /// read-only folder, or `/dev/null` for a file (it reads as empty).
    pub masked: Vec<PathBuf>,
    /// Kept out by granting each entry around them instead of the folder
    /// holding them: the folders on the way lose their own rights (listing,
    /// creating in them).
    pub allowed_around: Vec<PathBuf>,
    /// `user` when the mount namespace needed a user namespace (not
    /// privileged), `privileged` otherwise; `None`: no namespace made.
    pub namespace: Option<String>,
    /// Why paths were allowed around rather than masked.
    pub reason: Option<String>,
}

/// How the policy's process limit (`limits.processes`) is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLimitOutcome {
    pub enforced_by: ProcessLimitEnforcement,
    /// The limit (`limits.processes`); `None` when the policy sets none.
    pub limit: Option<u64>,
    /// The run's pids group (`enforced_by` = `cgroup_pids`). The parent
    /// removes it after the run: `sandbox::cgroup::remove_run_cgroup`.
    pub cgroup: Option<PathBuf>,
    /// Why it is `not_enforced`.
    pub reason: Option<String>,
}

/// What enforces the process limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessLimitEnforcement {
    /// `RLIMIT_NPROC` (non-root): counts every process of the user.
    Rlimit,
    /// A cgroup `pids` group of the run's own (root): counts only the
    /// program and its descendants, threads included.
    CgroupPids,
    /// Neither: no limit asked for, or root without a usable pids cgroup.
    NotEnforced,
}

/// Where set-up stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupStage {
    Arguments,
    Policy,
    ProcessGroup,
    Workspace,
    NoNewPrivs,
    Landlock,
    /// The network namespace and bridge of network by host.
    Network,
    Seccomp,
    Environment,
    Rlimits,
    Exec,
}

/// Why the program was not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupFailure {
    pub stage: SetupStage,
    pub message: String,
    /// The helper's exit status that follows.
    pub exit_code: u8,
}

/// `sandbox-exec --probe`: what this host supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSupport {
    /// `uname -r`.
    pub kernel_release: String,
    pub arch: String,
    pub rlimits: LayerSupport,
    /// Can `limits.processes` be enforced: `RLIMIT_NPROC` (non-root), or a
    /// writable cgroup pids hierarchy (root, which `RLIMIT_NPROC` exempts)?
    pub processes: LayerSupport,
    pub no_new_privs: LayerSupport,
    pub landlock: LayerSupport,
    /// The Landlock ABI the kernel offers (0: none).
    pub landlock_abi: u32,
    pub seccomp: LayerSupport,
    /// Not used by the sandbox (it needs no namespaces, so it works where
    /// unprivileged user namespaces are disabled); reported for clarity.
    pub user_namespaces: String,
}

/// Whether one layer can be enforced here, and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSupport {
    pub available: bool,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_line_is_tagged_and_parses_back() {
        let line = StatusLine::Failed(SetupFailure {
            stage: SetupStage::Landlock,
            message: "Landlock is required but not enabled".into(),
            exit_code: EXIT_SETUP_FAILED,
        });
        let json = serde_json::to_string(&line).unwrap();
        assert!(
            json.starts_with(r#"{"event":"failed","stage":"landlock""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<StatusLine>(&json).unwrap(), line);
    }
}
