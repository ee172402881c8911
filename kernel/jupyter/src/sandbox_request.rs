//! `sandbox_request` / `sandbox_reply`: the structured form of `%sandbox`
//! (`skillctl sandbox`).
//!
//! Request content: `{"action": "status"}` or `{"action": "end", "name":
//! SESSION}`. The `status` reply carries the [`SandboxStatus`] fields; see
//! `docs/protocol.md`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::errors::KernelError;
use crate::session::Shared;
use skillkernel_sandbox::status::SandboxStatus;

#[derive(Debug, Deserialize)]
struct SandboxRequest {
    action: String,
    #[serde(default)]
    name: Option<String>,
}

const USAGE: &str = "{\"action\": \"status\" | \"end\", \"name\": SESSION}";

async fn answer(shared: &Arc<Shared>, body: SandboxRequest) -> Result<Value, KernelError> {
    let sandbox = shared.sandbox().ok_or(KernelError::NoSandbox)?;
    match (body.action.as_str(), body.name) {
        ("status", _) => {
            let status = SandboxStatus::collect(&sandbox).await;
            let complete = status.complete();
            let mut value = serde_json::to_value(status).unwrap_or_default();
            value["complete"] = json!(complete);
            Ok(value)
        }
        ("end", Some(name)) => Ok(json!({ "ended": sandbox.sessions.end(&name).await })),
        ("end", None) => Err(KernelError::usage(
            "sandbox_request",
            "action `end` needs `name`",
            USAGE,
        )),
        (other, _) => Err(KernelError::usage(
            "sandbox_request",
            format!("unknown action `{other}`"),
            USAGE,
        )),
    }
}

/// The `sandbox_reply` content for a `sandbox_request`.
pub(crate) async fn reply(shared: &Arc<Shared>, content: &Value) -> Value {
    let result = match serde_json::from_value::<SandboxRequest>(content.clone()) {
        Ok(body) => answer(shared, body).await,
        Err(e) => Err(KernelError::usage("sandbox_request", e.to_string(), USAGE)),
    };
    match result {
        Ok(mut value) => {
            value["status"] = json!("ok");
            value
        }
        Err(e) => {
            let c = e.to_content();
            json!({ "status": "error", "ename": c.ename, "evalue": c.evalue, "traceback": c.traceback })
        }
    }
}
