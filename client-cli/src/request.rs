//! One custom shell request (`model_request`, `skill_request`) with its
//! IOPub output handed to a handler, as `skillctl` subcommands send them.

use std::time::Duration;

use serde_json::Value;
use skillctl::{KernelClient, OutputHandler, Target};

/// Waits for the kernel, sends `msg_type` with `content`, and collects the
/// reply and the output it causes (for up to `wait`); Ctrl-C interrupts
/// the kernel's work meanwhile. Returns the reply's content.
pub async fn send(
    client: &mut KernelClient,
    msg_type: &str,
    content: Value,
    timeout: Duration,
    wait: Duration,
    handler: &mut dyn OutputHandler,
) -> Result<Value, String> {
    client
        .wait_ready(timeout)
        .await
        .map_err(|e| e.to_string())?;
    let msg = client.message(msg_type, content);
    let ctrl_c = crate::interrupt_on_ctrl_c(client);
    let sent = client.send(Target::Shell, &msg).await;
    let outcome = match sent {
        Ok(()) => client.collect(&msg.header.msg_id, wait, handler).await,
        Err(e) => Err(e),
    };
    ctrl_c.abort();
    Ok(outcome.map_err(|e| e.to_string())?.reply.content)
}
