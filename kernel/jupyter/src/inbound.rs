//! Reading requests off a channel: receive, verify, parse.
//!
//! Shared by shell, control and stdin, so that every channel treats bad
//! input the same way: a frame set that fails to decode (bad signature,
//! truncated, oversized, not JSON) is logged with its reason and dropped,
//! and the loop goes on. Only a closed channel ends it.

use std::sync::Arc;

use skillkernel_protocol::Message;
use skillkernel_transport::{FrameReceiver, TransportError};
use tokio::sync::mpsc;

use crate::session::Shared;

/// The next message on `receiver` that decodes, or `None` once the channel
/// has closed.
pub(crate) async fn next_message(
    shared: &Shared,
    receiver: &mut dyn FrameReceiver,
    channel: &'static str,
) -> Option<Message> {
    loop {
        let frames = match receiver.recv().await {
            Ok(frames) => frames,
            Err(TransportError::Closed(_)) => return None,
            Err(e) => {
                tracing::debug!(channel, error = %e, "receive error");
                continue;
            }
        };
        match Message::decode(frames, &shared.signer, &shared.limits()) {
            Ok(msg) => {
                tracing::trace!(channel, msg_type = msg.msg_type(), "request");
                return Some(msg);
            }
            Err(e) => tracing::warn!(channel, error = %e, "dropping invalid message"),
        }
    }
}

/// Requests decoded ahead of the one being handled. Few: what waits
/// beyond them stays in the transport, which bounds it in bytes and
/// leaves the sender unread once full.
pub(crate) const DECODED_AHEAD: usize = 4;

/// Receives, verifies and queues requests from one channel until it
/// closes or nobody takes from the queue. Waits while the queue is full.
pub(crate) async fn queue_requests(
    shared: Arc<Shared>,
    mut receiver: Box<dyn FrameReceiver>,
    channel: &'static str,
    queue: mpsc::Sender<Message>,
) {
    while let Some(msg) = next_message(&shared, receiver.as_mut(), channel).await {
        if queue.send(msg).await.is_err() {
            break;
        }
    }
}
