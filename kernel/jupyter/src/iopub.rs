//! Publishing on IOPub: status and output.
//!
//! Publishing never waits for subscribers (the transport drops at its
//! high-water mark, as PUB does); [`Iopub::flush`] waits only until earlier
//! messages reached the socket, so a request's output goes out before its
//! reply.

use std::sync::Arc;

use serde::Serialize;
use skillkernel_protocol::content::{ExecutionState, Status};
use skillkernel_protocol::{Header, Message, Signer};
use skillkernel_transport::FrameSender;

/// The kernel's IOPub publisher.
pub struct Iopub {
    sender: Arc<dyn FrameSender>,
    signer: Signer,
    session_id: String,
    username: String,
}

impl Iopub {
    pub(crate) fn new(
        sender: Arc<dyn FrameSender>,
        signer: Signer,
        session_id: String,
        username: String,
    ) -> Self {
        Iopub {
            sender,
            signer,
            session_id,
            username,
        }
    }

    /// Publishes `content` as `msg_type`, with `parent`'s header as parent.
    pub async fn publish(&self, parent: Option<&Message>, msg_type: &str, content: impl Serialize) {
        let header = Header::new(msg_type, &self.session_id, &self.username);
        let mut msg = match parent {
            Some(parent) => parent.child(header, content),
            None => Message::new(header, content),
        };
        // IOPub is broadcast: no routing identities.
        msg.identities.clear();
        if let Err(e) = self.sender.send(msg.encode(&self.signer)).await {
            tracing::debug!(error = %e, msg_type, "IOPub publish failed");
        }
    }

    /// `status: busy` / `idle` for `parent`.
    pub async fn status(&self, parent: &Message, state: ExecutionState) {
        self.publish(
            Some(parent),
            "status",
            Status {
                execution_state: state,
            },
        )
        .await;
    }

    /// Waits until everything published so far has reached the socket.
    pub async fn flush(&self) {
        if let Err(e) = self.sender.flush().await {
            tracing::debug!(error = %e, "IOPub flush failed");
        }
    }
}
