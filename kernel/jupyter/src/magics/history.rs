//! `%history`: the input history as text.

use skillkernel_protocol::content::StreamName;

use super::split_args;
use crate::errors::KernelError;
use crate::exec_context::ExecContext;
use crate::history::HistoryEntry;

const USAGE: &str = "%history [-n N] [-g PATTERN] [-u] [-o]";

struct Options {
    n: Option<usize>,
    pattern: Option<String>,
    unique: bool,
    output: bool,
}

fn parse(args: &str) -> Result<Options, KernelError> {
    let mut opts = Options {
        n: None,
        pattern: None,
        unique: false,
        output: false,
    };
    let words = split_args(args);
    let mut it = words.into_iter();
    while let Some(word) = it.next() {
        match word.as_str() {
            "-n" => {
                let n = it
                    .next()
                    .ok_or_else(|| KernelError::usage("history", "-n needs a number", USAGE))?;
                opts.n = Some(n.parse().map_err(|_| {
                    KernelError::usage("history", format!("-n needs a number, not `{n}`"), USAGE)
                })?);
            }
            "-g" => {
                opts.pattern = Some(it.next().ok_or_else(|| {
                    KernelError::usage("history", "-g needs a glob pattern", USAGE)
                })?);
            }
            "-u" => opts.unique = true,
            "-o" => opts.output = true,
            other => {
                return Err(KernelError::usage(
                    "history",
                    format!("unknown option `{other}`"),
                    USAGE,
                ))
            }
        }
    }
    Ok(opts)
}

fn format_entry(e: &HistoryEntry, current_session: i64, output: bool) -> String {
    let label = if e.session == current_session {
        format!("{:>4}", e.line)
    } else {
        format!("{}/{}", e.session, e.line)
    };
    let mut s = String::new();
    for (i, line) in e.input.lines().enumerate() {
        if i == 0 {
            s.push_str(&format!("{label}: {line}\n"));
        } else {
            s.push_str(&format!("{:width$}  {line}\n", "", width = label.len()));
        }
    }
    if output {
        if let Some(out) = &e.output {
            for line in out.lines() {
                s.push_str(&format!("{:width$}  → {line}\n", "", width = label.len()));
            }
        }
    }
    s
}

pub(super) async fn run(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let opts = parse(args)?;
    let (mut entries, current_session) = ctx.shared.with_state(|state| {
        let history = &state.history;
        let entries: Vec<&HistoryEntry> = match &opts.pattern {
            Some(p) => {
                if glob::Pattern::new(p).is_err() {
                    return Err(KernelError::usage(
                        "history",
                        format!("`{p}` is not a valid glob pattern"),
                        USAGE,
                    ));
                }
                history.search(p, opts.n, opts.unique)
            }
            None => {
                let current = history.range(0, 0, None);
                let skip = opts.n.map_or(0, |n| current.len().saturating_sub(n));
                current.into_iter().skip(skip).collect()
            }
        };
        let entries: Vec<HistoryEntry> = entries.into_iter().cloned().collect();
        Ok((entries, history.session))
    })?;
    if opts.output {
        // `-o` shows whole outputs, read from the store's artifacts.
        entries = ctx.shared.with_full_outputs(entries).await;
    }
    let text: String = entries
        .iter()
        .map(|e| format_entry(e, current_session, opts.output))
        .collect();
    if !text.is_empty() {
        ctx.out.stream(StreamName::Stdout, &text).await;
    }
    Ok(())
}
