//! `sandbox_request` / `sandbox_reply`: the structured form of `%sandbox`
//! (`skillctl sandbox`).
//!
//! The request and reply are [`SandboxRequest`] and [`SandboxReply`]: the
//! `status` reply is the sandbox's [`SandboxStatus`](skillkernel_sandbox::status::SandboxStatus)
//! report; see `docs/protocol.md`.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use skillkernel_protocol::content::{
    ExtensionRequest, ReplyTo, SandboxEnded, SandboxLayer, SandboxReply, SandboxRequest,
    SandboxSession, SandboxStatus,
};

use crate::errors::KernelError;
use crate::session::Shared;
use skillkernel_sandbox::status::SandboxStatus as Report;

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The sandbox's report as the reply carries it.
fn status(report: Report) -> SandboxStatus {
    let complete = report.complete();
    let config = serde_json::to_value(&report.config).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the sandbox config");
        Value::Null
    });
    SandboxStatus {
        helper: path(&report.helper),
        kernel_release: report.kernel_release,
        arch: report.arch,
        layers: report
            .layers
            .into_iter()
            .map(|l| SandboxLayer {
                name: l.name.to_owned(),
                active: l.active,
                detail: l.detail,
            })
            .collect(),
        probe_error: report.probe_error,
        workspace: path(&report.workspace),
        toolchains: report.toolchains.iter().map(|p| path(p)).collect(),
        deny: report.deny.iter().map(|p| path(p)).collect(),
        config,
        sessions: report
            .sessions
            .into_iter()
            .map(|s| SandboxSession {
                name: s.name,
                skill: s.skill,
                pid: s.pid,
                exchanges: s.exchanges,
                idle_secs: s.idle_secs,
                busy: s.busy,
            })
            .collect(),
        audit_log: report.audit_log.as_deref().map(path),
        complete,
    }
}

async fn answer(
    shared: &Arc<Shared>,
    request: SandboxRequest,
) -> Result<SandboxReply, KernelError> {
    let sandbox = shared.sandbox().ok_or(KernelError::NoSandbox)?;
    Ok(match request {
        SandboxRequest::Status => {
            SandboxReply::Status(Box::new(status(Report::collect(&sandbox).await)))
        }
        SandboxRequest::End { name } => SandboxReply::End(SandboxEnded {
            ended: sandbox.sessions.end(&name).await,
        }),
    })
}

/// The `sandbox_reply` content for a `sandbox_request`'s content.
pub(crate) async fn reply(shared: &Arc<Shared>, content: &Value) -> Value {
    let result = match SandboxRequest::parse(content) {
        Ok(request) => answer(shared, request).await,
        Err(e) => {
            let actions: Vec<String> = SandboxRequest::actions()
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect();
            let usage = format!("{{\"action\": {}, \"name\": SESSION}}", actions.join(" | "));
            Err(KernelError::usage(
                SandboxRequest::TYPE.request(),
                e.to_string(),
                &usage,
            ))
        }
    };
    let reply: ReplyTo<SandboxRequest> = result.map_err(|e| e.to_content()).into();
    crate::errors::reply_json(reply)
}
