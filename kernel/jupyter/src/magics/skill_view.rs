//! How `%skill` shows what [`crate::skill_actions`] computes: listings and
//! metrics as HTML + text tables, `info` as Markdown, reports as text.
//! Inspection (Shift-Tab) shows the same `info` page.

use serde_json::Value;
use skillkernel_protocol::content::{
    DisplayData, ReloadReport, SkillDetails, SkillFailure, SkillSummary,
};

use super::model::table;
use crate::errors::KernelError;
use crate::exec_context::output::{markdown_bundle, text_bundle};
use crate::exec_context::ExecContext;

pub(super) async fn show_text(ctx: &mut ExecContext<'_>, text: &str) -> Result<(), KernelError> {
    ctx.out.display(DisplayData::new(text_bundle(text))).await;
    Ok(())
}

pub(super) async fn show_markdown(ctx: &mut ExecContext<'_>, md: &str) -> Result<(), KernelError> {
    ctx.out.display(DisplayData::new(markdown_bundle(md))).await;
    Ok(())
}

/// A JSON value as display text: strings bare, `null` empty.
pub(super) fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) async fn show_skills<'a>(
    ctx: &mut ExecContext<'_>,
    skills: impl IntoIterator<Item = &'a SkillSummary>,
    failures: &[SkillFailure],
) -> Result<(), KernelError> {
    let rows: Vec<Vec<String>> = skills
        .into_iter()
        .map(|e| {
            let state = match (&e.disabled, &e.shadowed_by) {
                (Some(_), _) => "disabled".to_owned(),
                (_, Some(by)) => format!("shadowed by {by}"),
                _ => e.state.to_lowercase(),
            };
            vec![
                e.name.clone(),
                e.version.clone(),
                e.kind.clone(),
                state,
                e.origin.clone(),
                e.trust_label().to_owned(),
                e.description.clone(),
            ]
        })
        .collect();
    let mut data = table(
        &[
            "name",
            "version",
            "kind",
            "state",
            "origin",
            "trust",
            "description",
        ],
        &rows,
    );
    let failures: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {}", f.path.as_deref().unwrap_or(""), f.message))
        .collect();
    if !failures.is_empty() {
        let note = format!(
            "\n{} skill file(s) did not load:\n{}\n",
            failures.len(),
            failures.join("\n")
        );
        if let Some(Value::String(t)) = data.get_mut("text/plain") {
            t.push_str(&note);
        }
        if let Some(Value::String(h)) = data.get_mut("text/html") {
            h.push_str(&format!(
                "<pre>{}</pre>",
                skillkernel_stdx::text::html_escape(&note)
            ));
        }
    }
    ctx.out.display(DisplayData::new(data)).await;
    Ok(())
}

pub(super) async fn show_metrics(ctx: &mut ExecContext<'_>, m: &Value) -> Result<(), KernelError> {
    let ms = |v: &Value| {
        v.as_f64()
            .map(|s| format!("{:.1}", s * 1e3))
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = m["skills"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(name, v)| {
            let errors: u64 = v["errors"]
                .as_object()
                .map(|e| e.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            vec![
                name.clone(),
                s(&v["executions"]),
                errors.to_string(),
                s(&v["retries"]),
                s(&v["cache_hits"]),
                format!("{}/{}", s(&v["prompt_tokens"]), s(&v["completion_tokens"])),
                ms(&v["execution"]["p50_seconds"]),
                ms(&v["execution"]["p95_seconds"]),
                ms(&v["load"]["p50_seconds"]),
            ]
        })
        .collect();
    let data = table(
        &[
            "skill",
            "runs",
            "errors",
            "retries",
            "cache hits",
            "tokens in/out",
            "p50 ms",
            "p95 ms",
            "load ms",
        ],
        &rows,
    );
    ctx.out.display(DisplayData::new(data)).await;
    Ok(())
}

pub(super) fn report_text(r: &ReloadReport) -> String {
    let mut lines = Vec::new();
    for (what, ids) in [
        ("added", &r.added),
        ("updated", &r.updated),
        ("removed", &r.removed),
    ] {
        if !ids.is_empty() {
            lines.push(format!("{what}: {}", ids.join(", ")));
        }
    }
    for f in &r.failed {
        lines.push(format!(
            "failed: {}: {}",
            f.path.as_deref().unwrap_or(""),
            f.message
        ));
    }
    if lines.is_empty() {
        lines.push("no changes".into());
    }
    // As JSON writes it (`12.0`), as this line always showed it.
    let elapsed = Value::from(r.elapsed_ms);
    lines.push(format!("({} unchanged, {elapsed} ms)", r.unchanged));
    lines.join("\n")
}

/// `%skill info` (and inspection) as Markdown.
pub fn info_markdown(v: &SkillDetails) -> String {
    let k = &v.skill;
    let mut md = format!(
        "**{}** {} — {} skill ({}, {})\n\n{}\n\n",
        k.name,
        k.version,
        k.kind,
        k.origin,
        k.state.to_lowercase(),
        k.description
    );
    if let Some(path) = &k.path {
        md.push_str(&format!("Source: `{path}`\n\n"));
    }
    if !v.parameters.is_empty() {
        md.push_str(
            "| parameter | type | required | default | description |\n|---|---|---|---|---|\n",
        );
        for p in &v.parameters {
            let kind = if p.values.is_empty() {
                p.type_name.clone()
            } else {
                format!("{} ({})", p.type_name, p.values.join(", "))
            };
            let default = p.default.as_ref().map(s).unwrap_or_default();
            md.push_str(&format!(
                "| `{}` | {kind} | {} | {default} | {} |\n",
                p.name,
                if p.required { "yes" } else { "no" },
                p.description
            ));
        }
        md.push('\n');
    }
    let deps: Vec<String> = v
        .dependencies
        .iter()
        .map(|d| format!("{} {}", d.name, d.version))
        .collect();
    if !deps.is_empty() {
        md.push_str(&format!("Depends on: {}\n\n", deps.join(", ")));
    }
    let b = &v.breaker;
    md.push_str(&format!(
        "Circuit breaker: {} ({} consecutive failures of {})\n\n",
        s(&b["state"]),
        s(&b["consecutive_failures"]),
        s(&b["threshold"])
    ));
    let history: Vec<String> = v
        .history
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{} → {} ({})", s(&t["from"]), s(&t["to"]), s(&t["hook"])))
        .collect();
    if !history.is_empty() {
        md.push_str(&format!("Lifecycle: {}\n", history.join(", ")));
    }
    if let Some(error) = &k.error {
        md.push_str(&format!("\n**Failed:** {}\n", error.message));
    }
    md
}
