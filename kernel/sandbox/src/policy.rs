//! [`SandboxPolicy`]: everything the `sandbox-exec` helper needs to confine
//! one program, as the kernel builds it and the helper reads it (JSON).
//!
//! The helper applies exactly what the policy says and adds nothing of its
//! own, so the defaults that make ordinary programs run (system paths to read,
//! `PATH`/`HOME`/`LANG` to keep) live here, in [`SandboxPolicy::default`].
//! Output caps are not part of it: the parent reads the program's pipes and
//! enforces them there (a confined program cannot be trusted to stop
//! writing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::proxy::HostPattern;

/// Paths a sandboxed program may read (and execute) by default: what a
/// dynamically linked program, a shell or an interpreter needs to start.
/// `/etc` is deliberately absent (it holds `shadow`, keys, credentials);
/// only the few files the dynamic loader and libc read from it are listed.
pub const DEFAULT_READ_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ssl",
    "/etc/mime.types",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    // Resolved when the rules are made: the program's own /proc/PID (not
    // its children's, and never another process's environ).
    "/proc/self",
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/stat",
    "/sys/devices/system/cpu",
];

/// Environment variables passed through from the parent by default. A name
/// ending in `*` keeps every variable with that prefix.
pub const DEFAULT_ENV_ALLOW: &[&str] = &["PATH", "HOME", "LANG", "LC_*", "TERM", "TZ", "USER"];

/// How a program is confined. Every field has a safe default (see
/// [`SandboxPolicy::default`]): no network, writes only to the workspace
/// and `/dev/null`, reads only of the system paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxPolicy {
    /// The program's working directory; readable and writable. The parent
    /// creates it; the helper only changes into it.
    pub workspace: Option<PathBuf>,
    /// Paths (files or directory trees) the program may read and execute.
    pub read: Vec<PathBuf>,
    /// Paths (files or directory trees) the program may read, write,
    /// create and remove in.
    pub write: Vec<PathBuf>,
    /// Paths (files or directory trees) no grant above reaches: secrets
    /// and the kernel's own files. Where one lies inside a grant, the helper
    /// hides it (see `helper/hidden.rs`). A grant at or inside one is kept:
    /// the daemon puts one there only for a skill trusted with exactly it.
    pub deny: Vec<PathBuf>,
    /// Hide denied paths inside grants with mounts in a mount namespace of
    /// the run's own (`false`: by granting around them, Landlock alone).
    pub mount_namespace: bool,
    /// May the program open network sockets (anything but `AF_UNIX`)?
    pub network: bool,
    /// Without `network`: the hosts the program may reach through the
    /// daemon's proxy (see [`crate::proxy`]); empty: none.
    pub network_hosts: Vec<HostPattern>,
    /// The run's proxy socket, set by the parent when `network_hosts` is
    /// not empty: the program then runs in a network namespace of its own
    /// and reaches the proxy through the helper's bridge.
    pub proxy_socket: Option<PathBuf>,
    /// Names of the parent's environment variables to keep (`PREFIX*` for
    /// a prefix); everything else is dropped.
    pub env_allow: Vec<String>,
    /// Variables set for the program, over the kept ones (the skill's `env`).
    pub env: BTreeMap<String, String>,
    pub limits: Limits,
    /// Fail (exit [`EXIT_SETUP_FAILED`](super::EXIT_SETUP_FAILED)) instead
    /// of running when Landlock cannot be fully enforced on this host.
    pub require_landlock: bool,
}

impl Default for SandboxPolicy {
    fn default() -> Self {
        Self {
            workspace: None,
            read: DEFAULT_READ_PATHS.iter().map(PathBuf::from).collect(),
            write: vec![PathBuf::from("/dev/null")],
            deny: Vec::new(),
            mount_namespace: true,
            network: false,
            network_hosts: Vec::new(),
            proxy_socket: None,
            env_allow: DEFAULT_ENV_ALLOW.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            limits: Limits::default(),
            require_landlock: false,
        }
    }
}

impl SandboxPolicy {
    /// The default policy, working (and writing) in `workspace`.
    pub fn for_workspace(workspace: impl AsRef<Path>) -> Self {
        Self {
            workspace: Some(workspace.as_ref().to_path_buf()),
            ..Self::default()
        }
    }

    /// Does the program reach the network through the proxy (by host)?
    pub fn network_by_host(&self) -> bool {
        !self.network && self.proxy_socket.is_some()
    }

    /// Does `name` pass the environment allow-list?
    pub fn keeps_env(&self, name: &str) -> bool {
        self.env_allow
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }
}

/// Resource limits, applied as rlimits (soft = hard, except CPU: see
/// `cpu_secs`). `None` leaves the parent's limit. Core dumps are always
/// disabled (`RLIMIT_CORE` = 0): a dump would write the program's memory,
/// secrets included, outside the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// CPU seconds (`RLIMIT_CPU`): SIGXCPU at the limit, SIGKILL one
    /// second later. Wall-clock timeouts are the parent's job.
    pub cpu_secs: Option<u64>,
    /// Virtual address space in bytes (`RLIMIT_AS`).
    pub address_space_bytes: Option<u64>,
    /// Largest file the program may write, in bytes (`RLIMIT_FSIZE`):
    /// SIGXFSZ beyond it.
    pub file_size_bytes: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Processes (threads included), against fork bombs. Non-root:
    /// `RLIMIT_NPROC`, which counts every process of this *user*, not only
    /// the sandbox's, so keep it well above what the user already runs.
    /// Root, which the kernel exempts from `RLIMIT_NPROC`: the run's own
    /// cgroup `pids` group (`pids.max`, the program and its descendants
    /// only) where the host has a writable one; the status line says which
    /// ([`ProcessLimitOutcome`](super::ProcessLimitOutcome)).
    pub processes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_secs: Some(300),
            address_space_bytes: Some(4 << 30),
            file_size_bytes: Some(1 << 30),
            open_files: Some(1024),
            processes: Some(4096),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_policy_denies_network_and_writes_outside_the_workspace() {
        let policy: SandboxPolicy = serde_json::from_str("{}").unwrap();
        assert!(!policy.network);
        assert_eq!(policy.write, vec![PathBuf::from("/dev/null")]);
        assert!(!policy.read.iter().any(|p| p == Path::new("/etc")));
        assert_eq!(policy, SandboxPolicy::default());
    }

    #[test]
    fn unknown_fields_are_rejected_rather_than_ignored() {
        let err = serde_json::from_str::<SandboxPolicy>(r#"{"netwrok": true}"#).unwrap_err();
        assert!(err.to_string().contains("netwrok"), "{err}");
    }

    #[test]
    fn env_allow_list_matches_names_and_prefixes() {
        let policy = SandboxPolicy::default();
        assert!(policy.keeps_env("PATH"));
        assert!(policy.keeps_env("LC_ALL"));
        assert!(!policy.keeps_env("PATHX"));
        assert!(!policy.keeps_env("AWS_SECRET_ACCESS_KEY"));
    }

    #[test]
    fn the_policy_round_trips_through_json() {
        let mut policy = SandboxPolicy::for_workspace("/tmp/ws");
        policy.network = true;
        policy.env.insert("MODE".into(), "fast".into());
        policy.limits.cpu_secs = Some(1);
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            serde_json::from_str::<SandboxPolicy>(&json).unwrap(),
            policy
        );
    }
}
