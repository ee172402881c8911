//! `%history`: the input history as text.

use skillkernel_protocol::content::{HistoryRequest, StreamName};

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
    let mut it = words.into_iter().peekable();
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
                // As IPython's `%history -g`: the words up to the next
                // option are the pattern, matched anywhere in an input.
                let mut words = Vec::new();
                while let Some(w) = it.next_if(|w| !is_option(w)) {
                    words.push(w);
                }
                opts.pattern = Some(words.join(" "));
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

fn is_option(word: &str) -> bool {
    matches!(word, "-n" | "-g" | "-u" | "-o")
}

/// The glob `%history -g PATTERN` searches with: `*PATTERN*`, so the
/// pattern may match anywhere in an input; no pattern matches everything.
/// The pattern's own `*`s at either end are dropped first (the glob crate
/// refuses `**` within a name, and they mean nothing more there). (A
/// `history_request` search takes its pattern as given.)
fn anywhere(pattern: &str) -> String {
    match pattern.trim_matches('*') {
        "" => "*".into(),
        inner => format!("*{inner}*"),
    }
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
    let request = match &opts.pattern {
        Some(p) => {
            let glob = anywhere(p);
            if glob::Pattern::new(&glob).is_err() {
                return Err(KernelError::usage(
                    "history",
                    format!("`{p}` is not a valid glob pattern"),
                    USAGE,
                ));
            }
            HistoryRequest::search(glob, opts.n, opts.unique)
        }
        // The current session; `-n N` its last N lines, which are the
        // last N execution counts (cells outside history are not counted).
        None => {
            let count = ctx.shared.with_state(|s| s.execution_count);
            let start = opts.n.map_or(0, |n| (count + 1).saturating_sub(n as u64));
            HistoryRequest::range(0, i64::try_from(start).unwrap_or(0), None)
        }
    };
    let mut entries = ctx.shared.history(&request).await;
    let current_session = ctx.shared.with_state(|s| s.history.session);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_takes_the_words_up_to_the_next_option_and_may_be_alone() {
        let o = parse("-g marker").unwrap();
        assert_eq!(o.pattern.as_deref(), Some("marker"));
        let o = parse("-g two words -n 3 -u").unwrap();
        assert_eq!(o.pattern.as_deref(), Some("two words"));
        assert_eq!((o.n, o.unique), (Some(3), true));
        let o = parse("-g").unwrap();
        assert_eq!(o.pattern.as_deref(), Some(""));
        let o = parse("-g -o").unwrap();
        assert_eq!((o.pattern.as_deref(), o.output), (Some(""), true));
    }

    #[test]
    fn the_pattern_matches_anywhere_as_in_ipython() {
        assert_eq!(anywhere("marker"), "*marker*");
        assert_eq!(anywhere("%set*"), "*%set*");
        assert_eq!(anywhere("*seq*"), "*seq*");
        assert_eq!(anywhere(""), "*");
        assert_eq!(anywhere("**"), "*");
        for p in ["marker", "%set*", "*seq*", "a?b", "[ab]c", ""] {
            assert!(glob::Pattern::new(&anywhere(p)).is_ok(), "{p}");
        }
        let glob = glob::Pattern::new(&anywhere("marker")).unwrap();
        assert!(glob.matches("%set x = \"the marker here\""));
        assert!(!glob.matches("%set x = 3"));
    }
}
