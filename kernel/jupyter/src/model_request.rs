//! `model_request` / `model_reply`: the structured form of `%model`, for
//! clients that want data rather than tables.
//!
//! Request content: `{"action": "list" | "info" | "status" | "use" |
//! "remove" | "pull", "model": SPEC}` (`model` where the action needs one;
//! `info` defaults to the session's model). `pull` publishes its progress
//! on IOPub as a display updated in place. See `docs/protocol.md`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use skillkernel_protocol::content::ErrorContent;

use skillkernel_protocol::Message;

use crate::errors::KernelError;
use crate::exec_context::output::Output;
use crate::pull::pull_with_progress;
use crate::session::Shared;

#[derive(Debug, Deserialize)]
struct ModelRequest {
    action: String,
    #[serde(default)]
    model: Option<String>,
}

fn need_model(req: &ModelRequest) -> Result<&str, KernelError> {
    req.model.as_deref().ok_or_else(|| {
        KernelError::usage(
            "model_request",
            format!("action `{}` needs a `model`", req.action),
            "{\"action\": \"use\", \"model\": NAME}",
        )
    })
}

async fn answer(
    shared: &Arc<Shared>,
    req: &Message,
    body: ModelRequest,
) -> Result<Value, KernelError> {
    let models = shared.models().ok_or(KernelError::NoModel)?;
    let current = shared.current_model().unwrap_or_default();
    let registry = &models.registry;
    Ok(match body.action.as_str() {
        "list" => {
            let listing = registry.list().await;
            let unavailable: Vec<Value> = listing
                .unavailable
                .iter()
                .map(|(backend, e)| json!({ "backend": backend, "error": e.to_string() }))
                .collect();
            json!({ "models": listing.models, "unavailable": unavailable, "current": current })
        }
        "info" => {
            let spec = body.model.clone().unwrap_or(current);
            json!({ "model": registry.info(&spec).await? })
        }
        "status" => {
            let route = registry.route(&current).await.ok().map(|r| r.spec());
            let cache = registry.cache().map(|c| json!({ "entries": c.len() }));
            json!({
                "providers": registry.statuses().await,
                "current": current,
                "current_resolved": route,
                "cache": cache,
            })
        }
        "use" => {
            let (info, kept) = shared.use_model(need_model(&body)?).await?;
            json!({ "model": info, "current": kept })
        }
        "remove" => {
            let removed = registry.remove(need_model(&body)?).await?;
            json!({ "removed": removed })
        }
        "pull" => {
            let spec = need_model(&body)?;
            // Progress goes to IOPub with this request as parent; an
            // interrupt_request stops the pull as it stops a cell.
            let cancel = shared.begin_cell();
            let mut out = Output::new(&shared.iopub, req, false, 0);
            let display_id = format!("pull-{}", req.header.msg_id);
            let result = pull_with_progress(&models, &mut out, spec, &display_id, &cancel).await;
            shared.end_cell();
            let summary = result?;
            let installed = summary
                .installed
                .as_ref()
                .map(|name| format!("{name}@{}", summary.backend));
            let info = registry
                .info(installed.as_deref().unwrap_or(spec))
                .await
                .ok();
            json!({ "pull": summary, "model": info })
        }
        other => {
            return Err(KernelError::usage(
                "model_request",
                format!("unknown action `{other}`"),
                "actions: list, info, status, use, remove, pull",
            ))
        }
    })
}

/// The `model_reply` content for a `model_request`'s content.
pub(crate) async fn reply(shared: &Arc<Shared>, req: &Message) -> Value {
    let result = match serde_json::from_value::<ModelRequest>(req.content.clone()) {
        Ok(body) => {
            let action = body.action.clone();
            answer(shared, req, body).await.map(|mut v| {
                v["status"] = json!("ok");
                v["action"] = json!(action);
                v
            })
        }
        Err(e) => Err(KernelError::usage(
            "model_request",
            e.to_string(),
            "{\"action\": \"list\"}",
        )),
    };
    result.unwrap_or_else(|e| {
        let ErrorContent {
            ename,
            evalue,
            traceback,
        } = e.to_content();
        json!({ "status": "error", "ename": ename, "evalue": evalue, "traceback": traceback })
    })
}
