//! `sandbox_request` / `sandbox_reply`: the sandbox as data (`%sandbox`,
//! `skillctl sandbox`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ExtensionRequest;
use crate::content::ErrorContent;
use crate::RequestType;

/// `sandbox_request` content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SandboxRequest {
    /// Which layers this host enforces, the settings, the sessions.
    Status,
    /// Ends the session skill process `name`.
    End { name: String },
}

impl ExtensionRequest for SandboxRequest {
    const TYPE: RequestType = RequestType::Sandbox;
    type Answer = SandboxReply;
    type Error = ErrorContent;
}

/// What a `sandbox_reply` with `status: ok` carries. Unlike the other
/// extension replies it has no `action`: the shape tells them apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SandboxReply {
    Status(Box<SandboxStatus>),
    End(SandboxEnded),
}

/// `status`: the sandbox on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxStatus {
    /// The helper binary (`skillkernel sandbox-exec`).
    pub helper: String,
    /// `uname -r`, when the probe answered.
    pub kernel_release: Option<String>,
    pub arch: Option<String>,
    pub layers: Vec<SandboxLayer>,
    /// Why the probe did not answer, if it did not.
    pub probe_error: Option<String>,
    /// The working directory of cells and skills.
    pub workspace: String,
    /// The `[sandbox]` config section in force.
    pub config: Value,
    pub sessions: Vec<SandboxSession>,
    pub audit_log: Option<String>,
    /// The home directory's toolchains every program may read (install
    /// roots found through the daemon's `PATH`).
    #[serde(default)]
    pub toolchains: Vec<String>,
    /// What no program may read whatever is granted: secrets and the
    /// kernel's own files.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Every layer is active.
    pub complete: bool,
}

/// One layer of the sandbox: `rlimits`, `no_new_privs`, `landlock`,
/// `seccomp`, `processes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLayer {
    pub name: String,
    pub active: bool,
    /// What it does here, or why it is not active.
    pub detail: String,
}

/// A session skill's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSession {
    pub name: String,
    pub skill: String,
    pub pid: i32,
    pub exchanges: u64,
    pub idle_secs: u64,
    pub busy: bool,
}

/// `end`: whether a session of that name was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxEnded {
    pub ended: bool,
}
