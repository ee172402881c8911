//! `%clear`, `%input`.

use serde_json::Value;
use skillkernel_protocol::content::StreamName;

use super::split_args;
use crate::errors::KernelError;
use crate::exec_context::ExecContext;
use crate::magics::vars::is_valid_name;

pub(super) const CLEAR_USAGE: &str = "%clear [--wait] | %clear --conversation";

pub(super) async fn clear(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let wait = match args.trim() {
        "" => false,
        "--wait" => true,
        "--conversation" => return clear_conversation(ctx).await,
        other => {
            return Err(KernelError::usage(
                "clear",
                format!("unknown option `{other}`"),
                CLEAR_USAGE,
            ))
        }
    };
    ctx.out.clear(wait).await;
    Ok(())
}

/// `%clear --conversation`: the next prompt starts a new conversation, and
/// the embedded engine lets go of the old one's KV cache now.
async fn clear_conversation(ctx: &mut ExecContext<'_>) -> Result<(), KernelError> {
    let messages = ctx.shared.clear_conversation();
    if let Some(models) = ctx.shared.models() {
        models.registry.forget_context().await;
    }
    let turns = messages / 2;
    let plural = if turns == 1 { "" } else { "s" };
    let text =
        format!("Conversation cleared ({turns} turn{plural}); the next prompt starts a new one.\n");
    ctx.out.stream(StreamName::Stdout, &text).await;
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
