//! `skill_request` / `skill_reply`: the structured form of `%skill`, for
//! clients that want data rather than tables (`skillctl skill`).
//!
//! The request and reply are [`SkillRequest`] and [`SkillReply`] (see
//! `docs/protocol.md`). `run` publishes the skill's progress and streamed
//! answer on IOPub, as a `%%run` cell does.

use std::sync::Arc;

use serde_json::Value;
use skillkernel_protocol::content::{
    ErrorWithHint, ExtensionRequest, MetricsFormat, ReplyTo, RequestError, SkillReply,
    SkillRequest, ToolStepReport,
};
use skillkernel_protocol::Message;

use crate::errors::KernelError;
use crate::exec_context::output::Output;
use crate::session::Shared;
use crate::skill_actions::{self as actions, Switch};
use crate::skill_install;
use crate::skill_run::{self, run_report, SkillCall};
use crate::skill_test;
use skillkernel_skills::exec::Args;

/// `{"action": "list" | "search" | …, "skill": NAME, …}`.
fn usage() -> String {
    let actions: Vec<String> = SkillRequest::actions()
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    format!(
        "{{\"action\": {}, \"skill\": NAME, …}}",
        actions.join(" | ")
    )
}

fn usage_error(e: RequestError) -> KernelError {
    KernelError::usage(SkillRequest::TYPE.request(), e.to_string(), &usage())
}

async fn answer(
    shared: &Arc<Shared>,
    req: &Message,
    request: SkillRequest,
) -> Result<SkillReply, KernelError> {
    let skills = actions::skills(shared)?;
    let sandbox = shared.sandbox();
    let sandbox = sandbox.as_deref();
    Ok(match request {
        SkillRequest::List => SkillReply::List(actions::list(&skills).await),
        SkillRequest::Search { query } => SkillReply::Search {
            skills: actions::search(&skills, &query)?,
        },
        SkillRequest::Info { skill } => SkillReply::Info {
            skill: Box::new(actions::info(&skills, &skill)?),
        },
        SkillRequest::Load { path, skill } => {
            let target = path.or(skill).ok_or_else(|| {
                usage_error(RequestError::MissingField {
                    action: "load".into(),
                    field: "path",
                })
            })?;
            SkillReply::Load {
                skill: Box::new(actions::load(&skills, &target).await?),
            }
        }
        SkillRequest::Reload { skill } => SkillReply::Reload {
            report: actions::reload(&skills, skill.as_deref()).await?,
        },
        SkillRequest::Unload { skill } => SkillReply::Unload {
            skills: actions::switch(&skills, sandbox, Switch::Unload, &skill).await?,
        },
        SkillRequest::Enable { skill } => SkillReply::Enable {
            skills: actions::switch(&skills, sandbox, Switch::Enable, &skill).await?,
        },
        SkillRequest::Disable { skill } => SkillReply::Disable {
            skills: actions::switch(&skills, sandbox, Switch::Disable, &skill).await?,
        },
        SkillRequest::Validate { path, skill } => SkillReply::Validate(match path.or(skill) {
            Some(target) => actions::validate(&skills, &target).await?,
            None => actions::validate_all(&skills).await?,
        }),
        SkillRequest::Metrics { skill, format } => SkillReply::Metrics(actions::metrics(
            &skills,
            skill.as_deref(),
            format == MetricsFormat::Prometheus,
        )?),
        SkillRequest::Reset { skill } => {
            SkillReply::Reset(actions::reset(shared, &skills, &skill)?)
        }
        SkillRequest::Trust {
            skill,
            digest,
            confirm,
        } => SkillReply::Trust(
            actions::trust(&skills, &skill, digest, confirm, "skill_request trust").await?,
        ),
        SkillRequest::Untrust { skill } => {
            SkillReply::Untrust(actions::untrust(&skills, &skill).await?)
        }
        SkillRequest::Install {
            source,
            git_ref,
            subdir,
        } => SkillReply::Install(
            skill_install::install(shared, &skills, source, git_ref, subdir).await?,
        ),
        SkillRequest::Update { skill } => SkillReply::Update {
            skills: skill_install::update(shared, &skills, skill.as_deref()).await?,
        },
        SkillRequest::Remove { skill } => {
            let (skill, path) = skill_install::remove(shared, &skills, &skill).await?;
            SkillReply::Remove { skill, path }
        }
        SkillRequest::Installed => SkillReply::Installed {
            skills: skill_install::installed(&skills).await?,
        },
        SkillRequest::Test { skill, mode, model } => {
            // An interrupt_request stops the tests as it stops a cell.
            let cancel = shared.begin_cell();
            let result = skill_test::run(shared, &skill, mode, model, &cancel).await;
            shared.end_cell();
            SkillReply::Test(result?)
        }
        SkillRequest::Run { skill, input, args } => {
            let call = SkillCall {
                spec: skill,
                args: Args::Json(args),
                input,
            };
            // An interrupt_request stops the run as it stops a cell.
            let cancel = shared.begin_cell();
            let mut out = Output::new(&shared.iopub, req, false, 0);
            let result = skill_run::run(shared, &mut out, &req.header.msg_id, &cancel, call).await;
            out.flush_stream().await;
            shared.end_cell();
            if !matches!(result, Err(KernelError::Interrupted)) {
                shared.metrics.run_ended(result.is_err());
            }
            let output = result?;
            SkillReply::Run {
                run: run_report(&output),
                tool_steps: output
                    .tool_steps
                    .iter()
                    .map(|t| ToolStepReport {
                        step: t.step,
                        call_id: t.call_id.clone(),
                        tool: t.tool.clone(),
                        arguments: t.arguments.clone(),
                        ok: t.ok,
                        result: t.result.clone(),
                        elapsed_ms: (t.elapsed.as_secs_f64() * 1e3).round(),
                    })
                    .collect(),
                output: output.text,
                json: output.json,
            }
        }
    })
}

/// The `skill_reply` content for a `skill_request`.
pub(crate) async fn reply(shared: &Arc<Shared>, req: &Message) -> Value {
    let result = match SkillRequest::parse(&req.content) {
        Ok(request) => answer(shared, req, request).await,
        Err(e) => Err(usage_error(e)),
    };
    let reply: ReplyTo<SkillRequest> = result
        .map_err(|e| {
            let hint = match &e {
                KernelError::Skill(s) => s.hint.clone(),
                _ => String::new(),
            };
            ErrorWithHint {
                error: e.to_content(),
                hint,
            }
        })
        .into();
    crate::errors::reply_json(reply)
}
