//! `%skill …`, `%%run NAME k=v …` and `%%skill`: skills from a notebook.
//!
//! Every action is computed by [`crate::skill_actions`] (the same data a
//! `skill_reply` carries) and shown here: listings as HTML and text
//! tables, `info` as Markdown, reports as text.

use std::path::Path;

use skillkernel_protocol::content::{MetricsReport, TestMode};

use super::skill_view::{
    info_markdown, report_text, show_markdown, show_metrics, show_skills, show_text,
};
use super::split_args;
use crate::errors::KernelError;
use crate::exec_context::ExecContext;
use crate::skill_actions::{self as actions, Switch};
use crate::skill_install;
use crate::skill_run::{self, SkillCall};
use skillkernel_skills::exec::Args;
use skillkernel_skills::format;
use skillkernel_skills::model::{Origin, SkillFormat};
use skillkernel_skills::SkillError;

pub(super) const USAGE: &str = "%skill [list | search QUERY | info NAME | run NAME [k=v …] [-- INPUT] | load NAME|PATH | reload [NAME] | unload NAME | enable NAME | disable NAME | validate [NAME|PATH] | metrics [NAME] [--prometheus] | reset NAME | trust NAME | untrust NAME | install SOURCE [--ref REF] [--subdir PATH] | update [NAME] | remove NAME | list --installed | test NAME [--record|--replay] [--model M]]";

fn usage(message: impl Into<String>) -> KernelError {
    KernelError::usage("skill", message, USAGE)
}

fn one<'a>(words: &'a [String], what: &str) -> Result<&'a str, KernelError> {
    words
        .get(1)
        .map(String::as_str)
        .ok_or_else(|| usage(format!("`%skill {}` needs {what}", words[0])))
}

/// `%skill ARGS`.
pub async fn run(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let mut words = split_args(args);
    if words.is_empty() {
        words.push("list".to_owned());
    }
    let action = words[0].as_str();
    let skills = actions::skills(ctx.shared)?;
    match action {
        "list" if words.iter().any(|w| w == "--installed") => {
            let list = skill_install::installed(&skills).await?;
            show_text(ctx, &installed_text(&list)).await
        }
        "install" => {
            let (source, git_ref, subdir) = install_args(&words[1..])?;
            let r = skill_install::install(ctx.shared, &skills, source, git_ref, subdir).await?;
            show_text(ctx, &r.text()).await
        }
        "update" => {
            let done = skill_install::update(ctx.shared, &skills, words.get(1).map(String::as_str))
                .await?;
            let lines: Vec<String> = done.iter().map(|r| r.text()).collect();
            let text = if lines.is_empty() {
                "no installed skills".to_owned()
            } else {
                lines.join("\n")
            };
            show_text(ctx, &text).await
        }
        "remove" => {
            let (name, path) =
                skill_install::remove(ctx.shared, &skills, one(&words, "a skill name")?).await?;
            show_text(ctx, &format!("removed {name} ({path})")).await
        }
        "test" => {
            let (name, mode, model) = test_args(&words[1..])?;
            let name = name.as_str();
            let cancel = ctx.cancel.clone();
            let report = crate::skill_test::run(ctx.shared, name, mode, model, &cancel).await?;
            show_text(ctx, &report.text()).await?;
            if report.failed > 0 {
                return Err(SkillError::new(
                    skillkernel_skills::ErrorCode::ValidationError,
                    format!(
                        "{} of {} tests of {} failed",
                        report.failed,
                        report.tests.len(),
                        report.skill
                    ),
                    "the answers above show what did not hold",
                )
                .into());
            }
            Ok(())
        }
        "list" => {
            let listing = actions::list(&skills).await;
            show_skills(ctx, listing.skills.iter(), &listing.failures).await
        }
        "search" => {
            let query = words[1..].join(" ");
            let hits = actions::search(&skills, &query)?;
            show_skills(ctx, hits.iter().map(|h| &h.skill), &[]).await
        }
        "info" => {
            let details = actions::info(&skills, one(&words, "a skill name")?)?;
            show_markdown(ctx, &info_markdown(&details)).await
        }
        "run" => {
            let (spec, rest) = words[1..]
                .split_first()
                .ok_or_else(|| usage("`%skill run` needs a skill name"))?;
            let (params, input) = match rest.iter().position(|w| w == "--") {
                Some(i) => (&rest[..i], rest[i + 1..].join(" ")),
                None => (rest, String::new()),
            };
            run_skill(ctx, spec, params, input).await
        }
        "load" => {
            let loaded = actions::load(&skills, one(&words, "a skill name or path")?).await?;
            show_text(ctx, &format!("loaded {}", loaded.id)).await
        }
        "reload" => {
            let report = actions::reload(&skills, words.get(1).map(String::as_str)).await?;
            show_text(ctx, &report_text(&report)).await
        }
        "unload" | "enable" | "disable" => {
            let (switch, past) = match action {
                "unload" => (Switch::Unload, "unloaded"),
                "enable" => (Switch::Enable, "enabled"),
                _ => (Switch::Disable, "disabled"),
            };
            let ids = actions::switch(
                &skills,
                ctx.shared.sandbox().as_deref(),
                switch,
                one(&words, "a skill name")?,
            )
            .await?;
            show_text(
                ctx,
                &format!(
                    "{past}: {}",
                    if ids.is_empty() {
                        "nothing".into()
                    } else {
                        ids.join(", ")
                    }
                ),
            )
            .await
        }
        "validate" if words.len() == 1 || words[1] == "--all" => {
            let v = actions::validate_all(&skills).await?;
            let checked = v.skills.len();
            let errors = &v.errors;
            if errors.is_empty() {
                return show_text(ctx, &format!("all {checked} skills load")).await;
            }
            let lines: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
            Err(SkillError::new(
                skillkernel_skills::ErrorCode::ValidationError,
                format!(
                    "{} of {} skills do not load:\n{}",
                    errors.len(),
                    checked + errors.len(),
                    lines.join("\n")
                ),
                "fix each file named above; `%skill validate NAME` checks one again",
            )
            .into())
        }
        "validate" => {
            let v = actions::validate(&skills, one(&words, "a skill name or path")?).await?;
            if v.valid {
                let id = v
                    .skills
                    .first()
                    .and_then(|s| s["id"].as_str())
                    .unwrap_or("?");
                show_text(ctx, &format!("{id}: valid")).await
            } else {
                let (message, remedy) = v
                    .errors
                    .first()
                    .map(|e| (e.message.clone(), e.remedy.clone()))
                    .unwrap_or_else(|| ("invalid".to_owned(), String::new()));
                Err(SkillError::new(
                    skillkernel_skills::ErrorCode::ValidationError,
                    message,
                    remedy,
                )
                .into())
            }
        }
        "metrics" => {
            let prometheus = words.iter().any(|w| w == "--prometheus");
            let name = words[1..]
                .iter()
                .find(|w| !w.starts_with("--"))
                .map(String::as_str);
            match actions::metrics(&skills, name, prometheus)? {
                MetricsReport::Prometheus { prometheus } => show_text(ctx, &prometheus).await,
                MetricsReport::Json { metrics } => show_metrics(ctx, &metrics).await,
            }
        }
        "reset" => {
            let v = actions::reset(ctx.shared, &skills, one(&words, "a skill name")?)?;
            show_text(
                ctx,
                &format!(
                    "{}: circuit breaker closed, metrics zeroed{}",
                    v.skill,
                    if v.conversation_cleared {
                        ", conversation cleared"
                    } else {
                        ""
                    }
                ),
            )
            .await
        }
        "trust" => {
            let name = one(&words, "a skill name")?;
            let report = actions::trust(&skills, name, None, true, "%skill trust").await?;
            show_text(ctx, &report.text(false)).await
        }
        "untrust" => {
            let report = actions::untrust(&skills, one(&words, "a skill name")?).await?;
            show_text(ctx, &report.text(true)).await
        }
        other => Err(usage(format!("unknown subcommand `{other}`"))),
    }
}

/// `SOURCE [--ref REF] [--subdir PATH]`.
fn install_args(words: &[String]) -> Result<(String, Option<String>, Option<String>), KernelError> {
    let mut source = None;
    let (mut git_ref, mut subdir) = (None, None);
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--ref" => git_ref = it.next().cloned(),
            "--subdir" => subdir = it.next().cloned(),
            other if source.is_none() && !other.starts_with("--") => {
                source = Some(other.to_owned())
            }
            other => return Err(usage(format!("`%skill install`: unexpected `{other}`"))),
        }
    }
    let source = source.ok_or_else(|| usage("`%skill install` needs a SOURCE"))?;
    Ok((source, git_ref, subdir))
}

/// `NAME [--record | --replay] [--model M | --model=M]`, strictly.
fn test_args(words: &[String]) -> Result<(String, TestMode, Option<String>), KernelError> {
    let (mut name, mut mode, mut model) = (None, None, None);
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let flag_mode = match w.as_str() {
            "--record" => Some(TestMode::Record),
            "--replay" => Some(TestMode::Replay),
            _ => None,
        };
        if let Some(m) = flag_mode {
            if mode.replace(m).is_some_and(|old| old != m) {
                return Err(usage(
                    "`%skill test`: --record and --replay exclude each other",
                ));
            }
        } else if w == "--model" {
            match it.next() {
                Some(m) if !m.starts_with("--") => model = Some(m.clone()),
                _ => return Err(usage("`%skill test`: --model needs a model")),
            }
        } else if let Some(m) = w.strip_prefix("--model=") {
            model = Some(m.to_owned());
        } else if w.starts_with("--") {
            return Err(usage(format!("`%skill test`: unknown option `{w}`")));
        } else if name.replace(w.clone()).is_some() {
            return Err(usage("`%skill test` takes one skill name"));
        }
    }
    let name = name.ok_or_else(|| usage("`%skill test` needs a skill name"))?;
    Ok((name, mode.unwrap_or(TestMode::Live), model))
}

/// `%skill list --installed` as text.
fn installed_text(list: &[skillkernel_protocol::content::InstalledSkill]) -> String {
    if list.is_empty() {
        return "no installed skills".into();
    }
    list.iter()
        .map(|s| {
            format!(
                "{}  {}  [{}]  from {} ({})",
                s.name, s.skill, s.state, s.source, s.resolved
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `%%run NAME k=v …` with the body as input.
pub async fn run_cell(
    ctx: &mut ExecContext<'_>,
    args: &str,
    body: &str,
) -> Result<(), KernelError> {
    let words = split_args(args);
    let (spec, params) = words
        .split_first()
        .ok_or_else(|| KernelError::usage("%run", "needs a skill name", "%%run NAME [k=v …]"))?;
    run_skill(ctx, spec, params, body.to_owned()).await
}

async fn run_skill(
    ctx: &mut ExecContext<'_>,
    spec: &str,
    params: &[String],
    input: String,
) -> Result<(), KernelError> {
    let args = Args::from_tokens(params)?;
    let call = SkillCall {
        spec: spec.to_owned(),
        args,
        input,
    };
    let msg_id = ctx.request.header.msg_id.clone();
    skill_run::run(ctx.shared, &mut ctx.out, &msg_id, &ctx.cancel, call)
        .await
        .map(|_| ())
}

/// `%%skill`: the body (a native YAML/JSON manifest, or a `SKILL.md` when
/// it opens with `---`) becomes a skill of this session.
pub async fn define(ctx: &mut ExecContext<'_>, body: &str) -> Result<(), KernelError> {
    let skills = actions::skills(ctx.shared)?;
    let format = if body.trim_start().starts_with("---") {
        SkillFormat::AgentSkills
    } else {
        SkillFormat::Native
    };
    let skill = format::parse_str(body, format, Path::new("<%%skill cell>"), Origin::Cell)
        .map_err(SkillError::from)?;
    let kind = skill.kind();
    let id = skills.registry.register_inline(skill);
    show_text(
        ctx,
        &format!("defined {id} ({kind}) for this session; run it with %%run"),
    )
    .await
}
