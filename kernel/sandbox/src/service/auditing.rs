//! What a [`Sandbox`] writes to the audit log: grants (once per skill),
//! judged runs, and set-up reports worth knowing (a Landlock not fully
//! enforced, denied paths hidden).

use std::path::Path;

use serde_json::{json, Map};

use super::Sandbox;
use crate::audit::{fields_of, Subject};
use crate::verdict::{Denial, Verdict};
use crate::{SandboxPolicy, SetupReport, DEFAULT_ENV_ALLOW, DEFAULT_READ_PATHS};

impl Sandbox {
    /// Audits the grants `policy` makes over the defaults, once per skill.
    pub fn audit_grants(&self, subject: &Subject, policy: &SandboxPolicy) {
        if subject.skill.is_none() {
            return;
        }
        if policy.network {
            self.audit.record_grant_once(subject, "network", Map::new());
        }
        let workspace = policy.workspace.as_deref();
        let extra_writes: Vec<_> = policy
            .write
            .iter()
            .filter(|p| Some(p.as_path()) != workspace && p.as_path() != Path::new("/dev/null"))
            .map(|p| p.display().to_string())
            .collect();
        if !extra_writes.is_empty() {
            let fields = fields_of(json!({"paths": extra_writes}));
            self.audit.record_grant_once(subject, "write", fields);
        }
        let extra_reads: Vec<_> = policy
            .read
            .iter()
            .filter(|p| {
                !DEFAULT_READ_PATHS
                    .iter()
                    .any(|d| Path::new(d) == p.as_path())
            })
            .filter(|p| subject.own_dir.as_deref() != Some(p.as_path()))
            // The daemon's own grant to every program, not the skill's.
            .filter(|p| !self.toolchains.contains(p))
            .map(|p| p.display().to_string())
            .collect();
        if !extra_reads.is_empty() {
            let fields = fields_of(json!({"paths": extra_reads}));
            self.audit.record_grant_once(subject, "read", fields);
        }
        let extra_env: Vec<_> = policy
            .env_allow
            .iter()
            .filter(|n| !DEFAULT_ENV_ALLOW.contains(&n.as_str()))
            .cloned()
            .collect();
        if !extra_env.is_empty() {
            let fields = fields_of(json!({"names": extra_env}));
            self.audit.record_grant_once(subject, "env", fields);
        }
    }

    /// Audits a judged run: denials, limit kills, timeouts, set-up
    /// failures, and a Landlock that could not be fully enforced.
    pub fn audit_run(
        &self,
        subject: &Subject,
        argv: &[String],
        verdict: &Verdict,
        denials: &[Denial],
        report: Option<&SetupReport>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.endings[verdict.kind_index()].fetch_add(1, Relaxed);
        self.denials.fetch_add(denials.len() as u64, Relaxed);
        let program = argv.first().cloned().unwrap_or_default();
        for denial in denials {
            let (event, fields) = match denial {
                Denial::Path { path, line, .. } => (
                    "denied_path",
                    json!({"program": program, "path": path, "detail": line}),
                ),
                Denial::Network { line } => (
                    "denied_network",
                    json!({"program": program, "detail": line}),
                ),
                // Recorded by the proxy as it refused it.
                Denial::Host { .. } => continue,
            };
            self.audit.record(event, subject, fields_of(fields));
        }
        match verdict {
            Verdict::LimitKilled { limit, detail } => self.audit.record(
                "limit_kill",
                subject,
                fields_of(json!({"program": program, "limit": limit.as_str(), "detail": detail})),
            ),
            Verdict::TimedOut { after } => self.audit.record(
                "timeout",
                subject,
                fields_of(json!({"program": program, "after_ms": after.as_millis() as u64})),
            ),
            Verdict::SetupFailed(failure) => self.audit.record(
                "setup_failed",
                subject,
                fields_of(
                    json!({"program": program, "stage": failure.stage, "detail": failure.message}),
                ),
            ),
            _ => {}
        }
        if let Some(report) = report {
            self.audit_report(subject, report);
        }
    }

    /// What a program's set-up report says the audit must know: a
    /// Landlock that is not fully enforced (once per status).
    pub(super) fn audit_report(&self, subject: &Subject, report: &SetupReport) {
        if report.landlock.status != "fully_enforced" {
            self.audit.record_once(
                "landlock_degraded",
                &report.landlock.status,
                subject,
                fields_of(
                    json!({"status": report.landlock.status, "reason": report.landlock.reason}),
                ),
            );
        }
        // How denied paths inside grants were kept out, once per way.
        let hidden = &report.hidden;
        if !hidden.masked.is_empty() || !hidden.allowed_around.is_empty() {
            let how = if hidden.allowed_around.is_empty() {
                "masked"
            } else {
                "allowed_around"
            };
            self.audit.record_once(
                "denied_paths_hidden",
                how,
                subject,
                fields_of(
                    json!({"masked": hidden.masked, "allowed_around": hidden.allowed_around,
                           "namespace": hidden.namespace, "reason": hidden.reason}),
                ),
            );
        }
    }
}
