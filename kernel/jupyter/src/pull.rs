//! Model pulls with a progress bar that updates in place.
//!
//! `%model pull` and `model_request` `pull` both come here. Progress is one
//! display (`display_data` with a `display_id`) updated with
//! `update_display_data`: an HTML `<progress>` bar for notebooks and a
//! text line for consoles. Updates are throttled; a change of step
//! ("verifying sha256 digest") is always shown.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value};
use skillkernel_protocol::content::DisplayData;
use skillkernel_providers::PullProgress;
use tokio_util::sync::CancellationToken;

use crate::errors::KernelError;
use crate::exec_context::output::Output;
use crate::Models;
use skillkernel_stdx::text::html_escape;

/// Shortest time between two progress updates of the same step.
const UPDATE_EVERY: Duration = Duration::from_millis(100);

/// How a pull ended (the `pull` of a `model_reply`).
pub use skillkernel_protocol::content::PullSummary;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The progress display: a bar when the size is known, the step otherwise.
fn render(spec: &str, step: &PullProgress) -> Map<String, Value> {
    let (text, html) = match (step.completed_bytes, step.total_bytes) {
        (Some(done), Some(total)) if total > 0 => {
            let pct = (done as f64 * 100.0 / total as f64).min(100.0);
            let filled = (pct / 5.0).round() as usize;
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(20 - filled.min(20)));
            (
                format!(
                    "{spec}: {} [{bar}] {pct:.0}% ({} / {})",
                    step.status,
                    mib(done),
                    mib(total)
                ),
                format!(
                    "<div><code>{}</code> {} <progress value=\"{done}\" max=\"{total}\"></progress> {pct:.0}% ({} / {})</div>",
                    html_escape(spec),
                    html_escape(&step.status),
                    mib(done),
                    mib(total)
                ),
            )
        }
        _ => (
            format!("{spec}: {}", step.status),
            format!(
                "<div><code>{}</code> {}</div>",
                html_escape(spec),
                html_escape(&step.status)
            ),
        ),
    };
    let mut data = Map::new();
    data.insert("text/plain".into(), Value::String(text));
    data.insert("text/html".into(), Value::String(html));
    data
}

/// Pulls `spec`, showing progress in `out` under `display_id`, until it
/// ends or `cancel` trips.
pub(crate) async fn pull_with_progress(
    models: &Models,
    out: &mut Output<'_>,
    spec: &str,
    display_id: &str,
    cancel: &CancellationToken,
) -> Result<PullSummary, KernelError> {
    let started = Instant::now();
    let (backend, mut stream) = models.registry.pull(spec).await?;
    let mut summary = PullSummary {
        model: spec.to_owned(),
        backend,
        status: String::new(),
        installed: None,
        completed_bytes: None,
        total_bytes: None,
        seconds: 0.0,
    };
    let mut shown = false;
    let mut last_shown = Instant::now();
    let mut last_step = String::new();
    let mut pending: Option<PullProgress> = None;
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = cancel.cancelled() => return Err(KernelError::Interrupted),
        };
        let Some(item) = item else { break };
        let step = item?;
        summary.status = step.status.clone();
        summary.installed = step.model.clone().or(summary.installed);
        summary.completed_bytes = step.completed_bytes.or(summary.completed_bytes);
        summary.total_bytes = step.total_bytes.or(summary.total_bytes);
        let new_step = step.status != last_step;
        if new_step {
            // Finish the previous step's bar before the next step replaces it.
            if let Some(previous) = pending.take() {
                let display = DisplayData::new(render(spec, &previous)).with_display_id(display_id);
                out.update_display(display).await;
            }
        }
        if new_step || last_shown.elapsed() >= UPDATE_EVERY {
            let display = DisplayData::new(render(spec, &step)).with_display_id(display_id);
            if shown {
                out.update_display(display).await;
            } else {
                out.display(display).await;
                shown = true;
            }
            last_shown = Instant::now();
            last_step = step.status.clone();
            pending = None;
        } else {
            pending = Some(step);
        }
    }
    if let Some(step) = pending {
        let display = DisplayData::new(render(spec, &step)).with_display_id(display_id);
        out.update_display(display).await;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    if summary.status != "success" {
        return Err(KernelError::Model {
            ename: "ModelPullError",
            message: format!(
                "the pull of `{spec}` ended without success (last step: {})",
                if summary.status.is_empty() {
                    "none"
                } else {
                    &summary.status
                }
            ),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_renders_a_bar_in_text_and_html() {
        let step = PullProgress {
            status: "pulling m.gguf".into(),
            completed_bytes: Some(1 << 20),
            total_bytes: Some(4 << 20),
            model: None,
        };
        let data = render("o/r/m.gguf", &step);
        let text = data["text/plain"].as_str().unwrap();
        assert!(
            text.contains("25%") && text.contains("#####-----"),
            "{text}"
        );
        let html = data["text/html"].as_str().unwrap();
        assert!(
            html.contains("<progress value=\"1048576\" max=\"4194304\">"),
            "{html}"
        );
    }
}
