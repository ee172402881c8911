//! Publishing on IOPub: status and output.
//!
//! Publishing never waits for subscribers (the transport drops for one
//! whose queue is full); [`Iopub::flush`] waits only until earlier
//! messages reached the socket, so a request's output goes out before its
//! reply. Each new subscription is answered with `iopub_welcome`.

use std::sync::Arc;

use serde::Serialize;
use skillkernel_protocol::content::{ExecutionState, IopubWelcome, Status};
use skillkernel_protocol::{Header, Message, Signer};
use skillkernel_transport::{FrameSender, IopubChannel, IopubControl, IopubStats};

/// The kernel's IOPub publisher.
pub struct Iopub {
    sender: Arc<dyn FrameSender>,
    control: Arc<dyn IopubControl>,
    signer: Signer,
    session_id: String,
    username: String,
}

impl Iopub {
    pub(crate) fn new(
        channel: IopubChannel,
        signer: Signer,
        session_id: String,
        username: String,
    ) -> Self {
        let welcome = {
            let (signer, session_id, username) =
                (signer.clone(), session_id.clone(), username.clone());
            move |topic: &[u8]| {
                let content = IopubWelcome {
                    subscription: String::from_utf8_lossy(topic).into_owned(),
                };
                Message::new(
                    Header::new("iopub_welcome", &session_id, &username),
                    content,
                )
                .encode(&signer)
            }
        };
        channel.control.set_welcome(Box::new(welcome));
        Iopub {
            sender: channel.sender,
            control: channel.control,
            signer,
            session_id,
            username,
        }
    }

    /// Subscribers, and what they lost.
    pub fn stats(&self) -> IopubStats {
        self.control.stats()
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

    /// Whether every subscriber has been sent what was published.
    pub fn all_written(&self) -> bool {
        self.sender.all_written()
    }
}
