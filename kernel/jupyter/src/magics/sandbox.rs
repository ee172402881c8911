//! `%sandbox`: what the sandbox enforces on this host, its sessions, and
//! ending one. The same report answers `sandbox_request` (see
//! [`crate::sandbox_request`]).

use serde_json::Value;
use skillkernel_protocol::content::DisplayData;

use crate::errors::KernelError;
use crate::exec_context::output::markdown_bundle;
use crate::exec_context::ExecContext;
use skillkernel_sandbox::status::{markdown, SandboxStatus};

pub const USAGE: &str = "%sandbox [status | end NAME]";

pub(super) async fn run(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let sandbox = ctx.shared.sandbox().ok_or(KernelError::NoSandbox)?;
    let mut words = args.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (None | Some("status"), None, None) => {
            let status = SandboxStatus::collect(&sandbox).await;
            let mut data = markdown_bundle(&markdown(&status));
            data.insert(
                "application/json".into(),
                serde_json::to_value(&status).unwrap_or(Value::Null),
            );
            ctx.out.display(DisplayData::new(data)).await;
            Ok(())
        }
        (Some("end"), Some(name), None) => {
            if sandbox.sessions.end(name).await {
                ctx.out
                    .display(DisplayData::new(markdown_bundle(&format!(
                        "Session `{name}` ended."
                    ))))
                    .await;
                Ok(())
            } else {
                Err(KernelError::usage(
                    "sandbox",
                    format!("no session named `{name}`; `%sandbox status` lists them"),
                    USAGE,
                ))
            }
        }
        _ => Err(KernelError::usage(
            "sandbox",
            format!("unknown arguments `{args}`"),
            USAGE,
        )),
    }
}
