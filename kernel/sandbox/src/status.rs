//! The sandbox's status, as `%sandbox status`, `sandbox_request` and
//! `skillctl sandbox status` show it: which layers this host enforces and
//! why any is not, what `!command` cells may do, the live sessions and
//! where the audit log is.

use std::path::PathBuf;

use serde::Serialize;

use super::service::{Sandbox, SandboxConfig};
use super::sessions::SessionInfo;
use super::HostSupport;

/// One layer of the sandbox on this host.
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// `rlimits`, `no_new_privs`, `landlock`, `seccomp`, `processes`.
    pub name: &'static str,
    pub active: bool,
    /// What it does here, or why it is not active.
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxStatus {
    /// The helper binary (`skillkernel sandbox-exec`).
    pub helper: PathBuf,
    /// `uname -r` and the architecture, when the probe answered.
    pub kernel_release: Option<String>,
    pub arch: Option<String>,
    pub layers: Vec<Layer>,
    /// Why the probe did not answer, if it did not.
    pub probe_error: Option<String>,
    /// The working directory: cells' and skills' workspace.
    pub workspace: PathBuf,
    pub config: SandboxConfig,
    pub sessions: Vec<SessionInfo>,
    pub audit_log: Option<PathBuf>,
    /// The home directory's toolchains every program may read.
    pub toolchains: Vec<PathBuf>,
    /// What no program may read, whatever is granted.
    pub deny: Vec<PathBuf>,
}

impl SandboxStatus {
    pub async fn collect(sandbox: &Sandbox) -> SandboxStatus {
        let host = sandbox.host_support().await;
        let (layers, probe_error, kernel_release, arch) = match host {
            Ok(h) => {
                let (release, arch) = (Some(h.kernel_release.clone()), Some(h.arch.clone()));
                (layers(h), None, release, arch)
            }
            Err(e) => (Vec::new(), Some(e), None, None),
        };
        SandboxStatus {
            helper: sandbox.helper().path().to_path_buf(),
            kernel_release,
            arch,
            layers,
            probe_error,
            workspace: sandbox.working_dir().to_path_buf(),
            config: sandbox.config().clone(),
            sessions: sandbox.sessions.list(),
            audit_log: sandbox.audit().path().map(|p| p.to_path_buf()),
            toolchains: sandbox.toolchains().to_vec(),
            deny: sandbox.deny_list(),
        }
    }

    /// Every layer is active.
    pub fn complete(&self) -> bool {
        self.probe_error.is_none() && self.layers.iter().all(|l| l.active)
    }
}

fn layers(h: HostSupport) -> Vec<Layer> {
    let layer = |name, support: super::LayerSupport| Layer {
        name,
        active: support.available,
        detail: support.detail,
    };
    vec![
        layer("rlimits", h.rlimits),
        layer("no_new_privs", h.no_new_privs),
        layer("landlock", h.landlock),
        layer("seccomp", h.seccomp),
        layer("processes", h.processes),
    ]
}

/// The report as Markdown, for `%sandbox status`.
pub fn markdown(s: &SandboxStatus) -> String {
    let mut out = String::from(
        "**Sandbox layers on this host**\n\n| layer | active | detail |\n|---|---|---|\n",
    );
    for l in &s.layers {
        let mark = if l.active { "yes" } else { "**no**" };
        out.push_str(&format!("| {} | {mark} | {} |\n", l.name, cell(&l.detail)));
    }
    if let Some(e) = &s.probe_error {
        out.push_str(&format!("\nThe host probe failed: {e}\n"));
    }
    let c = &s.config;
    out.push_str(&format!(
        "\n| setting | value |\n|---|---|\n| kernel | {} ({}) |\n| workspace | `{}` |\n| `!command` network | {} |\n| require Landlock | {} |\n| output cap | {} bytes |\n| sessions | {} of {} |\n| audit log | {} |\n",
        s.kernel_release.as_deref().unwrap_or("?"),
        s.arch.as_deref().unwrap_or("?"),
        s.workspace.display(),
        c.network.describe(),
        c.require_landlock,
        c.max_output_bytes,
        s.sessions.len(),
        c.max_sessions,
        s.audit_log
            .as_ref()
            .map_or("the daemon log only".to_owned(), |p| format!("`{}`", p.display())),
    ));
    if !s.toolchains.is_empty() {
        let roots: Vec<String> = s
            .toolchains
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect();
        out.push_str(&format!(
            "\nToolchains in the home directory every program may read: {}\n",
            roots.join(", ")
        ));
    }
    if !s.deny.is_empty() {
        let shut: Vec<String> = s
            .deny
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect();
        out.push_str(&format!(
            "\nKept shut whatever is granted (secrets, the kernel's own files): {}\n",
            shut.join(", ")
        ));
    }
    if !s.sessions.is_empty() {
        out.push_str("\n| session | skill | pid | exchanges | idle |\n|---|---|---|---|---|\n");
        for x in &s.sessions {
            let idle = if x.busy {
                "busy".to_owned()
            } else {
                format!("{} s", x.idle_secs)
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {idle} |\n",
                x.name, x.skill, x.pid, x.exchanges
            ));
        }
    }
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
