//! A tool loop's steps in the notebook: one display per tool call,
//! shown when the model asks for it and updated in place with its result
//! — a short line, and the full result collapsible (`<details>` in the
//! Markdown; terminals and `skillctl` read the `text/plain` line).

use serde_json::Value;
use skillkernel_protocol::content::{DisplayData, MimeBundle};
use skillkernel_skills::exec::ToolStep;

use crate::exec_context::output::Output;

/// How much of a result the one-line summary shows.
const SHORT: usize = 120;

/// The displays of one run's tool calls.
pub struct ToolSteps {
    /// `tool-<msg_id>`; each call's display id adds `-<step>-<call_id>`
    /// (backends number calls per answer, so ids repeat across steps).
    prefix: String,
}

impl ToolSteps {
    pub fn new(msg_id: &str) -> Self {
        ToolSteps {
            prefix: format!("tool-{msg_id}"),
        }
    }

    fn display(&self, step: u32, call_id: &str, markdown: String, plain: String) -> DisplayData {
        let mut data = MimeBundle::new();
        data.insert("text/markdown".into(), Value::String(markdown));
        data.insert("text/plain".into(), Value::String(plain));
        DisplayData::new(data).with_display_id(&format!("{}-{step}-{call_id}", self.prefix))
    }

    /// The model asked for `tool` with `arguments`.
    pub async fn called(
        &self,
        out: &mut Output<'_>,
        step: u32,
        call_id: &str,
        tool: &str,
        arguments: &Value,
    ) {
        let args = arguments.to_string();
        out.display(self.display(
            step,
            call_id,
            format!(
                "🔧 step {step} · `{tool}` `{}` — running…",
                shorten(&args, 200)
            ),
            format!("[step {step}] {tool} {args} …"),
        ))
        .await;
    }

    /// The call ended.
    pub async fn finished(&self, out: &mut Output<'_>, step: &ToolStep) {
        let mark = if step.ok { "✓" } else { "✗" };
        let args = step.arguments.to_string();
        let first_line = step.result.lines().next().unwrap_or("").trim();
        let short = shorten(first_line, SHORT);
        let ms = step.elapsed.as_millis();
        let markdown = format!(
            "{mark} step {} · `{}` `{}` — {short} ({ms} ms)\n\n<details><summary>full result ({} bytes)</summary>\n\n```text\n{}\n```\n\n</details>",
            step.step,
            step.tool,
            shorten(&args, 200),
            step.result.len(),
            step.result.replace("```", "ʼʼʼ"),
        );
        let plain = format!(
            "[step {}] {} {args} {mark} {short} ({ms} ms)",
            step.step, step.tool
        );
        out.update_display(self.display(step.step, &step.call_id, markdown, plain))
            .await;
    }
}

fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let cut: String = text.chars().take(limit).collect();
    format!("{cut}…")
}
