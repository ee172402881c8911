//! `skill_request` / `skill_reply`: the structured form of `%skill`, for
//! clients that want data rather than tables (`skillctl skill`).
//!
//! Request content: `{"action": ACTION, "skill": SPEC, "query": TEXT,
//! "input": TEXT, "args": {NAME: VALUE}, "path": PATH, "format": "json" |
//! "prometheus"}` with the fields the action needs. `run` publishes the
//! skill's progress and streamed answer on IOPub, as a `%%run` cell does.
//! See `docs/protocol.md`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use skillkernel_protocol::content::ErrorContent;
use skillkernel_protocol::Message;

use crate::errors::KernelError;
use crate::exec_context::output::Output;
use crate::session::Shared;
use crate::skill_actions as actions;
use crate::skill_run::{self, run_metadata, SkillCall};
use skillkernel_skills::exec::Args;

#[derive(Debug, Deserialize)]
struct SkillRequest {
    action: String,
    #[serde(default)]
    skill: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    args: Option<Map<String, Value>>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

const USAGE: &str = "{\"action\": \"list\" | \"search\" | \"info\" | \"run\" | \"load\" | \
                     \"reload\" | \"unload\" | \"enable\" | \"disable\" | \"validate\" | \
                     \"metrics\" | \"reset\", \"skill\": NAME, …}";

fn required<'a>(
    value: &'a Option<String>,
    field: &str,
    action: &str,
) -> Result<&'a str, KernelError> {
    value.as_deref().ok_or_else(|| {
        KernelError::usage(
            "skill_request",
            format!("action `{action}` needs `{field}`"),
            USAGE,
        )
    })
}

async fn answer(
    shared: &Arc<Shared>,
    req: &Message,
    body: SkillRequest,
) -> Result<Value, KernelError> {
    let skills = actions::skills(shared)?;
    let action = body.action.as_str();
    match action {
        "list" => Ok(actions::list(&skills)),
        "search" => actions::search(&skills, body.query.as_deref().unwrap_or("")),
        "info" => actions::info(&skills, required(&body.skill, "skill", action)?),
        "load" => {
            let target = body.path.as_ref().or(body.skill.as_ref());
            actions::load(&skills, required(&target.cloned(), "path", action)?).await
        }
        "reload" => actions::reload(&skills, body.skill.as_deref()).await,
        "unload" | "enable" | "disable" => {
            actions::switch(
                &skills,
                shared.sandbox().as_deref(),
                action,
                required(&body.skill, "skill", action)?,
            )
            .await
        }
        "validate" => match body.path.as_ref().or(body.skill.as_ref()) {
            Some(target) => actions::validate(&skills, target).await,
            None => actions::validate_all(&skills).await,
        },
        "metrics" => actions::metrics(
            &skills,
            body.skill.as_deref(),
            body.format.as_deref() == Some("prometheus"),
        ),
        "reset" => actions::reset(&skills, required(&body.skill, "skill", action)?),
        "run" => {
            let call = SkillCall {
                spec: required(&body.skill, "skill", action)?.to_owned(),
                args: Args::Json(body.args.clone().unwrap_or_default()),
                input: body.input.clone().unwrap_or_default(),
            };
            // An interrupt_request stops the run as it stops a cell.
            let cancel = shared.begin_cell();
            let mut out = Output::new(&shared.iopub, req, false, 0);
            let result = skill_run::run(shared, &mut out, &req.header.msg_id, &cancel, call).await;
            out.flush_stream().await;
            shared.end_cell();
            let output = result?;
            Ok(json!({ "output": output.text, "run": run_metadata(&output) }))
        }
        other => Err(KernelError::usage(
            "skill_request",
            format!("unknown action `{other}`"),
            USAGE,
        )),
    }
}

/// The `skill_reply` content for a `skill_request`.
pub(crate) async fn reply(shared: &Arc<Shared>, req: &Message) -> Value {
    let result = match serde_json::from_value::<SkillRequest>(req.content.clone()) {
        Ok(body) => {
            let action = body.action.clone();
            answer(shared, req, body).await.map(|mut v| {
                v["status"] = json!("ok");
                v["action"] = json!(action);
                v
            })
        }
        Err(e) => Err(KernelError::usage("skill_request", e.to_string(), USAGE)),
    };
    result.unwrap_or_else(|e| {
        let hint = match &e {
            KernelError::Skill(s) => s.hint.clone(),
            _ => String::new(),
        };
        let ErrorContent {
            ename,
            evalue,
            traceback,
        } = e.to_content();
        json!({ "status": "error", "ename": ename, "evalue": evalue, "traceback": traceback, "hint": hint })
    })
}
