//! `%model`: list, inspect and choose the models prompt cells use.

use serde_json::{Map, Value};
use skillkernel_protocol::content::DisplayData;
use skillkernel_providers::ModelInfo;

use super::split_args;
use crate::errors::KernelError;
use crate::execute::output::markdown_bundle;
use crate::execute::ExecContext;
use crate::magics::vars::html_escape;
use crate::Models;

const USAGE: &str =
    "%model [list | use NAME | info [NAME] | status | stats | import PATH [NAME] | rm NAME]";

fn models(ctx: &ExecContext<'_>) -> Result<Models, KernelError> {
    ctx.shared.config.models.clone().ok_or(KernelError::NoModel)
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        None => "?".into(),
    }
}

/// A text and an HTML table with the same rows.
fn table(header: &[&str], rows: &[Vec<String>]) -> Map<String, Value> {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut text = line(header.to_vec()) + "\n";
    let mut html = String::from("<table><thead><tr>");
    for h in header {
        html.push_str(&format!("<th>{h}</th>"));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
        text.push('\n');
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

fn row(info: &ModelInfo, current: &str) -> Vec<String> {
    let marker = if info.name == current || info.name.starts_with(current) {
        "*"
    } else {
        ""
    };
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

pub(super) async fn run(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let words = split_args(args);
    let models = models(ctx)?;
    let current = ctx.shared.current_model().unwrap_or_default();
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["list"] => {
            let list = models.provider.list().await?;
            if list.is_empty() {
                let status = models.provider.status().await;
                let text = format!(
                    "No models ({}). Install the default with packaging/fetch-default-model.",
                    status.detail
                );
                ctx.out
                    .display(DisplayData::new(markdown_bundle(&text)))
                    .await;
            } else {
                let rows: Vec<Vec<String>> = list.iter().map(|m| row(m, &current)).collect();
                ctx.out
                    .display(DisplayData::new(table(&COLUMNS, &rows)))
                    .await;
            }
            Ok(())
        }
        ["use", name] => {
            let info = ctx.shared.use_model(name).await?;
            let text = format!("Prompt cells now use **{}** ({}).", info.name, info.backend);
            ctx.out
                .display(DisplayData::new(markdown_bundle(&text)))
                .await;
            Ok(())
        }
        ["info"] | ["info", _] => {
            let name = words.get(1).cloned().unwrap_or(current.clone());
            let info = models.provider.info(&name).await?;
            let rows = vec![row(&info, &current)];
            ctx.out
                .display(DisplayData::new(table(&COLUMNS, &rows)))
                .await;
            Ok(())
        }
        ["status"] => {
            let status = models.provider.status().await;
            let text = format!(
                "| | |\n|---|---|\n| backend | {} |\n| available | {} |\n| version | {} |\n| detail | {} |\n| session model | {} |\n",
                status.backend,
                if status.available { "yes" } else { "no" },
                status.version.unwrap_or_default(),
                status.detail,
                current,
            );
            ctx.out
                .display(DisplayData::new(markdown_bundle(&text)))
                .await;
            Ok(())
        }
        ["stats"] => {
            let rows: Vec<Vec<String>> = ctx
                .shared
                .state()
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
                .collect();
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
            let info = models
                .provider
                .import(std::path::Path::new(path), name)
                .await?;
            let rows = vec![row(&info, &current)];
            ctx.out
                .display(DisplayData::new(table(&COLUMNS, &rows)))
                .await;
            Ok(())
        }
        ["rm", name] => {
            models.provider.remove(name).await?;
            let text = format!("Removed model `{name}`.");
            ctx.out
                .display(DisplayData::new(markdown_bundle(&text)))
                .await;
            Ok(())
        }
        _ => Err(KernelError::usage(
            "model",
            format!("cannot `{}`", args.trim()),
            USAGE,
        )),
    }
}
