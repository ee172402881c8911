//! How `%skill` shows what [`crate::skill_actions`] computes: listings and
//! metrics as HTML + text tables, `info` as Markdown, reports as text.
//! Inspection (Shift-Tab) shows the same `info` page.

use serde_json::Value;
use skillkernel_protocol::content::DisplayData;

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

pub(super) async fn show_skills(ctx: &mut ExecContext<'_>, v: &Value) -> Result<(), KernelError> {
    let rows: Vec<Vec<String>> = v["skills"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let state = match (&e["disabled"], &e["shadowed_by"]) {
                (Value::String(_), _) => "disabled".to_owned(),
                (_, Value::String(by)) => format!("shadowed by {by}"),
                _ => s(&e["state"]).to_lowercase(),
            };
            vec![
                s(&e["name"]),
                s(&e["version"]),
                s(&e["kind"]),
                state,
                s(&e["origin"]),
                s(&e["description"]),
            ]
        })
        .collect();
    let mut data = table(
        &["name", "version", "kind", "state", "origin", "description"],
        &rows,
    );
    let failures: Vec<String> = v["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{}: {}", s(&f["path"]), s(&f["message"])))
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

pub(super) fn report_text(r: &Value) -> String {
    let mut lines = Vec::new();
    for what in ["added", "updated", "removed"] {
        let ids: Vec<String> = r[what].as_array().into_iter().flatten().map(s).collect();
        if !ids.is_empty() {
            lines.push(format!("{what}: {}", ids.join(", ")));
        }
    }
    for f in r["failed"].as_array().into_iter().flatten() {
        lines.push(format!("failed: {}: {}", s(&f["path"]), s(&f["message"])));
    }
    if lines.is_empty() {
        lines.push("no changes".into());
    }
    lines.push(format!(
        "({} unchanged, {} ms)",
        s(&r["unchanged"]),
        s(&r["elapsed_ms"])
    ));
    lines.join("\n")
}

/// `%skill info` (and inspection) as Markdown.
pub fn info_markdown(v: &Value) -> String {
    let mut md = format!(
        "**{}** {} — {} skill ({}, {})\n\n{}\n\n",
        s(&v["name"]),
        s(&v["version"]),
        s(&v["kind"]),
        s(&v["origin"]),
        s(&v["state"]).to_lowercase(),
        s(&v["description"])
    );
    if let Some(path) = v["path"].as_str() {
        md.push_str(&format!("Source: `{path}`\n\n"));
    }
    let params: Vec<&Value> = v["parameters"].as_array().into_iter().flatten().collect();
    if !params.is_empty() {
        md.push_str(
            "| parameter | type | required | default | description |\n|---|---|---|---|---|\n",
        );
        for p in params {
            let kind = match p["values"].as_array() {
                Some(vals) if !vals.is_empty() => {
                    format!(
                        "{} ({})",
                        s(&p["type_name"]),
                        vals.iter().map(s).collect::<Vec<_>>().join(", ")
                    )
                }
                _ => s(&p["type_name"]),
            };
            md.push_str(&format!(
                "| `{}` | {kind} | {} | {} | {} |\n",
                s(&p["name"]),
                if p["required"] == true { "yes" } else { "no" },
                s(&p["default"]),
                s(&p["description"])
            ));
        }
        md.push('\n');
    }
    let deps: Vec<String> = v["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| format!("{} {}", s(&d["name"]), s(&d["version"])))
        .collect();
    if !deps.is_empty() {
        md.push_str(&format!("Depends on: {}\n\n", deps.join(", ")));
    }
    let b = &v["breaker"];
    md.push_str(&format!(
        "Circuit breaker: {} ({} consecutive failures of {})\n\n",
        s(&b["state"]),
        s(&b["consecutive_failures"]),
        s(&b["threshold"])
    ));
    let history: Vec<String> = v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{} → {} ({})", s(&t["from"]), s(&t["to"]), s(&t["hook"])))
        .collect();
    if !history.is_empty() {
        md.push_str(&format!("Lifecycle: {}\n", history.join(", ")));
    }
    if !v["error"].is_null() {
        md.push_str(&format!("\n**Failed:** {}\n", s(&v["error"]["message"])));
    }
    md
}
