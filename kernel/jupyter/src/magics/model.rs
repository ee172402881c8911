//! `%model`: list, inspect and choose the models prompt cells use.

use serde_json::{Map, Value};
use skillkernel_protocol::content::DisplayData;
use skillkernel_providers::ModelInfo;

use super::split_args;
use crate::errors::KernelError;
use crate::exec_context::output::markdown_bundle;
use crate::exec_context::ExecContext;
use crate::Models;
use skillkernel_stdx::text::html_escape;

pub(super) const USAGE: &str = "%model [list | use NAME|PROFILE | info [NAME] | status | stats | pull NAME | import PATH [NAME] | rm NAME]";

fn models(ctx: &ExecContext<'_>) -> Result<Models, KernelError> {
    ctx.shared.models().ok_or(KernelError::NoModel)
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        None => "?".into(),
    }
}

/// A text and an HTML table with the same rows.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> Map<String, Value> {
    let text = skillkernel_stdx::text::text_table(header, rows);
    let mut html = String::from("<table><thead><tr>");
    for h in header {
        html.push_str(&format!("<th>{h}</th>"));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            html.push_str(&format!("<td>{}</td>", html_escape(cell)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    let mut data = Map::new();
    data.insert("text/plain".into(), Value::String(text));
    data.insert("text/html".into(), Value::String(html));
    data
}

/// Whether `info` is what the session's `current` specifier names.
fn is_current(info: &ModelInfo, current: &str) -> bool {
    match current.rsplit_once('@') {
        Some((name, backend)) => info.name == name && info.backend == backend,
        None => info.name == current || info.name.starts_with(current),
    }
}

fn row(info: &ModelInfo, current: &str) -> Vec<String> {
    let marker = if is_current(info, current) { "*" } else { "" };
    vec![
        marker.into(),
        info.name.clone(),
        info.backend.clone(),
        info.family.clone().unwrap_or_default(),
        info.quantization.clone().unwrap_or_default(),
        size(info.size_bytes),
        info.context_length
            .map(|c| c.to_string())
            .unwrap_or_default(),
    ]
}

const COLUMNS: [&str; 7] = ["", "name", "backend", "family", "quant", "size", "context"];

async fn show(ctx: &mut ExecContext<'_>, data: Map<String, Value>) {
    ctx.out.display(DisplayData::new(data)).await;
}

async fn say(ctx: &mut ExecContext<'_>, markdown: &str) {
    show(ctx, markdown_bundle(markdown)).await;
}

pub(super) async fn run(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let words = split_args(args);
    let models = models(ctx)?;
    let registry = &models.registry;
    let current = ctx.shared.current_model().unwrap_or_default();
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["list"] => {
            let listing = registry.list().await;
            let down: String = listing
                .unavailable
                .iter()
                .map(|(backend, e)| format!("\n* {backend}: {e}"))
                .collect();
            if listing.models.is_empty() {
                let text = format!(
                    "No models. Install the default with `packaging/fetch-default-model`, or `%model pull`.{down}"
                );
                say(ctx, &text).await;
            } else {
                let rows: Vec<Vec<String>> =
                    listing.models.iter().map(|m| row(m, &current)).collect();
                show(ctx, table(&COLUMNS, &rows)).await;
                if !down.is_empty() {
                    say(ctx, &format!("Backends not reachable:{down}")).await;
                }
            }
            Ok(())
        }
        ["use", spec] => {
            let (info, kept) = ctx.shared.use_model(spec).await?;
            let text = if kept.contains('@') {
                format!("Prompt cells now use **{}** ({}).", info.name, info.backend)
            } else {
                format!(
                    "Prompt cells now use the **{kept}** profile (now **{}** on {}).",
                    info.name, info.backend
                )
            };
            say(ctx, &text).await;
            Ok(())
        }
        ["info"] | ["info", _] => {
            let spec = words.get(1).cloned().unwrap_or(current.clone());
            let info = registry.info(&spec).await?;
            let rows = vec![row(&info, &current)];
            show(ctx, table(&COLUMNS, &rows)).await;
            let price = match registry.config().price(&info.name, &info.backend) {
                Some(p) => format!(
                    "Price: **{} in / {} out** per million tokens (`[models.prices]`).",
                    p.input, p.output
                ),
                None => "No price configured: its calls are counted in `%usage` without a cost (`[models.prices]` sets one).".into(),
            };
            say(ctx, &price).await;
            Ok(())
        }
        ["status"] => {
            let rows: Vec<Vec<String>> = registry
                .statuses()
                .await
                .into_iter()
                .map(|s| {
                    vec![
                        s.backend,
                        if s.available { "yes" } else { "no" }.into(),
                        s.version.unwrap_or_default(),
                        s.detail,
                    ]
                })
                .collect();
            show(
                ctx,
                table(&["backend", "available", "version", "detail"], &rows),
            )
            .await;
            let cache = match registry.cache() {
                Some(c) => format!("on, {} entries", c.len()),
                None => "off".into(),
            };
            let route = registry
                .route(&current)
                .await
                .map(|r| r.spec())
                .unwrap_or_else(|e| format!("unavailable: {e}"));
            say(
                ctx,
                &format!("Session model: **{current}** → {route}. Response cache: {cache}."),
            )
            .await;
            Ok(())
        }
        ["pull", spec] => {
            let display_id = format!("pull-{}", ctx.request.header.msg_id);
            let cancel = ctx.cancel.clone();
            let summary =
                crate::pull::pull_with_progress(&models, &mut ctx.out, spec, &display_id, &cancel)
                    .await?;
            let text = format!(
                "Pulled **{spec}** into {} as `{}` in {:.1} s.",
                summary.backend,
                summary.installed.as_deref().unwrap_or(spec),
                summary.seconds
            );
            say(ctx, &text).await;
            Ok(())
        }
        ["stats"] => {
            let rows: Vec<Vec<String>> = ctx.shared.with_state(|state| {
                state
                    .model_stats
                    .iter()
                    .map(|(name, u)| {
                        vec![
                            name.clone(),
                            u.turns.to_string(),
                            u.prompt_tokens.to_string(),
                            u.completion_tokens.to_string(),
                            format!("{:.1}", u.tokens_per_second()),
                            format!("{:.1}", u.last_tokens_per_second),
                            u.last_first_token_ms
                                .map(|t| format!("{t:.0}"))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect()
            });
            if rows.is_empty() {
                let text = "No prompts run in this session yet.";
                ctx.out
                    .display(DisplayData::new(markdown_bundle(text)))
                    .await;
            } else {
                let header = [
                    "model",
                    "turns",
                    "prompt tok",
                    "generated tok",
                    "mean tok/s",
                    "last tok/s",
                    "last TTFT ms",
                ];
                ctx.out
                    .display(DisplayData::new(table(&header, &rows)))
                    .await;
            }
            Ok(())
        }
        ["import", path] | ["import", path, _] => {
            let name = words.get(2).map(String::as_str);
            let info = registry.import(std::path::Path::new(path), name).await?;
            let rows = vec![row(&info, &current)];
            show(ctx, table(&COLUMNS, &rows)).await;
            Ok(())
        }
        ["rm", spec] => {
            let removed = registry.remove(spec).await?;
            say(ctx, &format!("Removed model `{removed}`.")).await;
            Ok(())
        }
        _ => Err(KernelError::usage(
            "model",
            format!("cannot `{}`", args.trim()),
            USAGE,
        )),
    }
}
