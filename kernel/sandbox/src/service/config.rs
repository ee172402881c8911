//! The daemon's `[sandbox]` section and what the kernel sets a sandbox up
//! with.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::proxy::NetworkGrant;

/// The daemon's `[sandbox]` section: what `!command` cells may do beyond
/// the defaults, and the bounds every sandboxed program runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// May `!command` cells use the network: `false`, `true`, or a list of
    /// hosts they reach through the proxy.
    pub network: NetworkGrant,
    /// Extra paths `!command` cells may read.
    pub read: Vec<PathBuf>,
    /// Extra paths `!command` cells may write (the working directory always).
    pub write: Vec<PathBuf>,
    /// Extra environment variables `!command` cells keep.
    pub env: Vec<String>,
    /// Paths no program may read or write, whatever is granted, beside the
    /// built-in secrets and the kernel's own files (`~/` is the home
    /// directory; see [`super::deny`]).
    pub deny: Vec<PathBuf>,
    /// Skill name → denied paths that skill alone may be granted, each
    /// exactly (its manifest must still ask for them).
    pub trust: std::collections::BTreeMap<String, Vec<PathBuf>>,
    /// Hide denied paths inside grants with mounts in a mount namespace of
    /// each run's own; `false`: with Landlock alone (granting around them).
    pub mount_namespace: bool,
    /// Refuse to run any program where Landlock is not fully enforced.
    pub require_landlock: bool,
    /// stdout and stderr of one program together; it is killed beyond.
    pub max_output_bytes: u64,
    /// Session skills' processes alive at once; the least recently used
    /// idle one is ended to make room.
    pub max_sessions: usize,
    /// A session idle this long is ended.
    pub session_idle_timeout_secs: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            network: NetworkGrant::Nothing,
            read: Vec::new(),
            write: Vec::new(),
            env: Vec::new(),
            deny: Vec::new(),
            trust: Default::default(),
            mount_namespace: true,
            require_landlock: false,
            max_output_bytes: 64 << 20,
            max_sessions: 8,
            session_idle_timeout_secs: 1800,
        }
    }
}

/// How the kernel sets up its sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSetup {
    /// The `skillkernel` binary (run as `skillkernel sandbox-exec`).
    pub helper: PathBuf,
    /// Where the audit log goes (`<state_dir>/sandbox-audit.jsonl`);
    /// `None`: the daemon log only.
    pub state_dir: Option<PathBuf>,
    /// The workspace of cells and skills: the kernel's working directory.
    pub working_dir: PathBuf,
    /// The kernel's own files no program may read (connection file, config
    /// files, log folder); the state folder is added to them.
    pub kernel_files: Vec<PathBuf>,
    /// Folders of connection files (Jupyter's runtime folder): denied whole,
    /// or only their connection files for a workspace inside one.
    pub connection_folders: Vec<PathBuf>,
    pub config: SandboxConfig,
}
