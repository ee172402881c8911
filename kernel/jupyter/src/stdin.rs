//! The stdin channel: `input_request` out, `input_reply` back.
//!
//! The request goes to the routing identity of the `execute_request` that
//! asked for input; Jupyter clients give their shell and stdin sockets the
//! same identity, so it reaches the right front end.

use std::sync::Arc;

use skillkernel_protocol::content::{InputReply, InputRequest};
use skillkernel_protocol::{stdin, Message};
use skillkernel_transport::FrameReceiver;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::errors::KernelError;
use crate::inbound;
use crate::session::Shared;
use skillkernel_stdx::lock;

/// Asks the client that sent `parent` for a line of input.
pub async fn ask(
    shared: &Arc<Shared>,
    parent: &Message,
    prompt: &str,
    password: bool,
    cancel: &CancellationToken,
) -> Result<String, KernelError> {
    let request = parent.child(
        shared.header(stdin::INPUT_REQUEST),
        InputRequest {
            prompt: prompt.to_owned(),
            password,
        },
    );
    let (tx, rx) = oneshot::channel();
    lock(&shared.stdin_waiters).insert(request.header.msg_id.clone(), tx);
    let msg_id = request.header.msg_id.clone();
    if let Err(e) = shared.stdin.send(request.encode(&shared.signer)).await {
        lock(&shared.stdin_waiters).remove(&msg_id);
        return Err(KernelError::Io(format!(
            "could not send input_request: {e}"
        )));
    }
    let result = tokio::select! {
        value = rx => value.map_err(|_| KernelError::Io("stdin channel closed".into())),
        _ = cancel.cancelled() => Err(KernelError::Interrupted),
    };
    lock(&shared.stdin_waiters).remove(&msg_id);
    result
}

/// The waiter an `input_reply` belongs to: the one whose `input_request` it
/// names as parent, else — since shell runs one cell at a time, at most one
/// cell waits — the only waiter. `jupyter_client`'s `input()` (and so
/// `jupyter console`) sends replies with an empty parent header.
fn take_waiter(shared: &Shared, parent_id: Option<String>) -> Option<oneshot::Sender<String>> {
    let mut waiters = lock(&shared.stdin_waiters);
    if let Some(waiter) = parent_id.as_ref().and_then(|id| waiters.remove(id)) {
        return Some(waiter);
    }
    if waiters.len() == 1 {
        let id = waiters.keys().next().cloned()?;
        return waiters.remove(&id);
    }
    None
}

/// Reads `input_reply`s and hands each to the cell waiting for it.
pub(crate) async fn read_replies(shared: Arc<Shared>, mut receiver: Box<dyn FrameReceiver>) {
    while let Some(msg) = inbound::next_message(&shared, receiver.as_mut(), "stdin").await {
        if msg.msg_type() != stdin::INPUT_REPLY {
            tracing::warn!(msg_type = msg.msg_type(), "unexpected message on stdin");
            continue;
        }
        let value = match msg.parse_content::<InputReply>() {
            Ok(reply) => reply.value,
            Err(e) => {
                tracing::warn!(error = %e, "invalid input_reply");
                continue;
            }
        };
        match take_waiter(&shared, msg.parent_header.msg_id()) {
            Some(waiter) => {
                let _ = waiter.send(value);
            }
            None => tracing::warn!("input_reply for no waiting cell; dropped"),
        }
    }
}
