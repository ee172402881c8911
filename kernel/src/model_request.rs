//! `model_request` / `model_reply`: the structured form of `%model`, for
//! clients that want data rather than tables.
//!
//! Request content: `{"action": "list" | "info" | "status" | "use" |
//! "remove", "model": NAME}` (`model` where the action needs one; `info`
//! defaults to the session's model). See `docs/protocol.md`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use skillkernel_protocol::content::ErrorContent;

use crate::errors::KernelError;
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

async fn answer(shared: &Arc<Shared>, req: ModelRequest) -> Result<Value, KernelError> {
    let models = shared.config.models.clone().ok_or(KernelError::NoModel)?;
    let current = shared.current_model().unwrap_or_default();
    let provider = &models.provider;
    Ok(match req.action.as_str() {
        "list" => {
            json!({ "models": provider.list().await?, "current": current })
        }
        "info" => {
            let name = req.model.clone().unwrap_or(current);
            json!({ "model": provider.info(&name).await? })
        }
        "status" => json!({ "providers": [provider.status().await], "current": current }),
        "use" => {
            let info = shared.use_model(need_model(&req)?).await?;
            json!({ "model": info, "current": info.name })
        }
        "remove" => {
            let name = need_model(&req)?;
            provider.remove(name).await?;
            json!({ "removed": name })
        }
        other => {
            return Err(KernelError::usage(
                "model_request",
                format!("unknown action `{other}`"),
                "actions: list, info, status, use, remove",
            ))
        }
    })
}

/// The `model_reply` content for a `model_request`'s content.
pub(crate) async fn reply(shared: &Arc<Shared>, content: &Value) -> Value {
    let result = match serde_json::from_value::<ModelRequest>(content.clone()) {
        Ok(req) => {
            let action = req.action.clone();
            answer(shared, req).await.map(|mut v| {
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
