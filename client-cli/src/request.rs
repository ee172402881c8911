//! One extension request (`model_request`, `skill_request`,
//! `sandbox_request`) with its IOPub output handed to a handler, as
//! `skillctl` subcommands send them.

use std::time::Duration;

use serde_json::Value;
use skillctl::{KernelClient, OutputHandler, Target};
use skillkernel_protocol::content::{ExtensionRequest, ReplyTo};

/// Waits for the kernel, sends `request`, and collects the reply and the
/// output it causes (for up to `wait`); Ctrl-C interrupts the kernel's
/// work meanwhile. Returns the reply's content as it came.
pub async fn send<R: ExtensionRequest>(
    client: &mut KernelClient,
    request: &R,
    timeout: Duration,
    wait: Duration,
    handler: &mut dyn OutputHandler,
) -> Result<Value, String> {
    client
        .wait_ready(timeout)
        .await
        .map_err(|e| e.to_string())?;
    let msg = client.extension_message(request);
    let ctrl_c = crate::interrupt_on_ctrl_c(client);
    let sent = client.send(Target::Shell, &msg).await;
    let outcome = match sent {
        Ok(()) => client.collect(&msg.header.msg_id, wait, handler).await,
        Err(e) => Err(e),
    };
    ctrl_c.abort();
    Ok(outcome.map_err(|e| e.to_string())?.reply.content)
}

/// Reads a reply's content as the reply to `R`.
pub fn parse<R: ExtensionRequest>(content: &Value) -> Result<ReplyTo<R>, String> {
    serde_json::from_value::<ReplyTo<R>>(content.clone())
        .map_err(|e| format!("unexpected {} from the kernel: {e}", R::TYPE.reply()))
}
