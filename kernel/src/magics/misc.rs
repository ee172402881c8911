//! `%clear`, `%input`, `%status`.

use serde_json::Value;
use skillkernel_protocol::content::DisplayData;
use skillkernel_protocol::PROTOCOL_VERSION;

use super::split_args;
use crate::errors::KernelError;
use crate::execute::output::markdown_bundle;
use crate::execute::ExecContext;
use crate::magics::vars::is_valid_name;
use crate::store::PersistenceStatus;

pub(super) async fn clear(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let wait = match args.trim() {
        "" => false,
        "--wait" => true,
        other => {
            return Err(KernelError::usage(
                "clear",
                format!("unknown option `{other}`"),
                "%clear [--wait]",
            ))
        }
    };
    ctx.out.clear(wait).await;
    Ok(())
}

pub(super) async fn input(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    const USAGE: &str = "%input [--password] NAME [PROMPT]";
    let mut words = split_args(args).into_iter().peekable();
    let password = words.peek().map(String::as_str) == Some("--password");
    if password {
        words.next();
    }
    let name = words
        .next()
        .ok_or_else(|| KernelError::usage("input", "a variable name is required", USAGE))?;
    if !is_valid_name(&name) {
        return Err(KernelError::usage(
            "input",
            format!("`{name}` is not a valid variable name"),
            USAGE,
        ));
    }
    let rest: Vec<String> = words.collect();
    let prompt = if rest.is_empty() {
        format!("{name}: ")
    } else {
        rest.join(" ")
    };
    if !ctx.allow_stdin {
        return Err(KernelError::StdinNotAllowed);
    }
    ctx.out.flush_stream().await;
    let value = crate::stdin::ask(ctx.shared, ctx.request, &prompt, password, &ctx.cancel).await?;
    ctx.shared.set_variable(name, Value::String(value));
    Ok(())
}

fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else {
        format!("{m}m {s}s")
    }
}

/// `%status` rows for the persisted session.
fn persistence_rows(p: &PersistenceStatus) -> String {
    let state = match (&p.reason, p.persisted) {
        (_, true) if p.unsaved_changes == 0 => "persisted".to_owned(),
        (_, true) => format!("persisted ({} changes being saved)", p.unsaved_changes),
        (Some(reason), false) => format!("in memory: {reason}"),
        (None, false) => "in memory".to_owned(),
    };
    let mut rows = String::new();
    if let Some(session) = &p.session {
        rows.push_str(&format!("| persisted session | `{}` |\n", cell(session)));
    }
    if let Some(path) = &p.path {
        rows.push_str(&format!(
            "| state path | `{}` |\n",
            cell(&path.display().to_string())
        ));
    }
    rows.push_str(&format!("| session state | {} |\n", cell(&state)));
    rows.push_str(&format!("| history entries | {} |\n", p.history_entries));
    if p.artifacts > 0 {
        rows.push_str(&format!(
            "| output artifacts | {} ({} KiB stored) |\n",
            p.artifacts,
            p.artifact_bytes.div_ceil(1024)
        ));
    }
    rows
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub(super) async fn status(ctx: &mut ExecContext<'_>) -> Result<(), KernelError> {
    let persistence = ctx.shared.persistence_status();
    let (count, vars, session) = {
        let state = ctx.shared.state();
        (
            state.execution_count,
            state.variables.len(),
            state.history.session,
        )
    };
    let markdown = format!(
        "| | |\n|---|---|\n\
         | kernel | skillkernel {} |\n\
         | protocol | {} |\n\
         | kernel session | `{}` |\n\
         | history session | {} |\n\
         | uptime | {} |\n\
         | execution count | {} |\n\
         | session variables | {} |\n{}",
        env!("CARGO_PKG_VERSION"),
        PROTOCOL_VERSION,
        ctx.shared.session_id,
        session,
        format_uptime(ctx.shared.started.elapsed().as_secs()),
        count,
        vars,
        persistence_rows(&persistence),
    );
    ctx.out
        .display(DisplayData::new(markdown_bundle(&markdown)))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::format_uptime;

    #[test]
    fn uptime_reads_naturally() {
        assert_eq!(format_uptime(5), "0m 5s");
        assert_eq!(format_uptime(3725), "1h 2m 5s");
        assert_eq!(format_uptime(90000), "1d 1h 0m");
    }
}
