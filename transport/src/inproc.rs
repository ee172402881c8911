//! In-process transport: tokio channels shaped like the ZeroMQ sockets.
//!
//! The kernel side behaves like ROUTER sockets (every received message
//! starts with the peer's identity frame, every sent message is routed by
//! it), so the kernel runs unchanged; tests drive it without TCP.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{
    Channel, ClientSockets, FrameReceiver, FrameSender, Frames, HeartbeatGuard, IopubChannel,
    IopubControl, IopubStats, IopubWelcome, KernelSockets, TransportError,
};

/// The identity the in-process client presents on every ROUTER channel.
pub const CLIENT_IDENTITY: &[u8] = b"inproc-client";

struct Rx {
    name: &'static str,
    rx: mpsc::UnboundedReceiver<Frames>,
}

#[async_trait]
impl FrameReceiver for Rx {
    async fn recv(&mut self) -> Result<Frames, TransportError> {
        self.rx
            .recv()
            .await
            .ok_or(TransportError::Closed(self.name))
    }
}

/// Sender that optionally adds (client → kernel) or strips (kernel →
/// client) the routing identity, like a DEALER/ROUTER pair.
struct Tx {
    name: &'static str,
    tx: mpsc::UnboundedSender<Frames>,
    routing: Routing,
}

enum Routing {
    None,
    AddIdentity,
    StripIdentity,
}

#[async_trait]
impl FrameSender for Tx {
    async fn send(&self, mut frames: Frames) -> Result<(), TransportError> {
        match self.routing {
            Routing::None => {}
            Routing::AddIdentity => frames.insert(0, Bytes::from_static(CLIENT_IDENTITY)),
            Routing::StripIdentity => {
                if frames.first().map(|f| f.as_ref()) != Some(CLIENT_IDENTITY) {
                    // A ROUTER drops messages for unknown peers.
                    return Ok(());
                }
                frames.remove(0);
            }
        }
        self.tx
            .send(frames)
            .map_err(|_| TransportError::Closed(self.name))
    }
}

/// In process, the client is wired in before the kernel starts: there is
/// no subscription to welcome, and nothing is ever dropped.
struct NoSubscriptions;

impl IopubControl for NoSubscriptions {
    fn set_welcome(&self, _welcome: IopubWelcome) {}

    fn stats(&self) -> IopubStats {
        IopubStats {
            subscribers: 1,
            ..IopubStats::default()
        }
    }
}

fn router_pair(name: &'static str) -> (Channel, Channel) {
    let (to_kernel, kernel_rx) = mpsc::unbounded_channel();
    let (to_client, client_rx) = mpsc::unbounded_channel();
    let kernel = Channel {
        receiver: Box::new(Rx {
            name,
            rx: kernel_rx,
        }),
        sender: Arc::new(Tx {
            name,
            tx: to_client,
            routing: Routing::StripIdentity,
        }),
    };
    let client = Channel {
        receiver: Box::new(Rx {
            name,
            rx: client_rx,
        }),
        sender: Arc::new(Tx {
            name,
            tx: to_kernel,
            routing: Routing::AddIdentity,
        }),
    };
    (kernel, client)
}

/// A connected kernel/client pair with no sockets. The client receives
/// every IOPub message from the start.
pub fn pair() -> (KernelSockets, ClientSockets) {
    let (shell_k, shell_c) = router_pair("shell");
    let (control_k, control_c) = router_pair("control");
    let (stdin_k, stdin_c) = router_pair("stdin");
    let (iopub_tx, iopub_rx) = mpsc::unbounded_channel();
    let (hb_to_kernel, mut hb_kernel_rx) = mpsc::unbounded_channel::<Frames>();
    let (hb_to_client, hb_client_rx) = mpsc::unbounded_channel();
    let echo = tokio::spawn(async move {
        while let Some(frames) = hb_kernel_rx.recv().await {
            if hb_to_client.send(frames).is_err() {
                break;
            }
        }
    });
    let kernel = KernelSockets {
        shell: shell_k,
        control: control_k,
        stdin: stdin_k,
        iopub: IopubChannel {
            sender: Arc::new(Tx {
                name: "iopub",
                tx: iopub_tx,
                routing: Routing::None,
            }),
            control: Arc::new(NoSubscriptions),
        },
        heartbeat: HeartbeatGuard::new(move || echo.abort()),
    };
    let client = ClientSockets {
        shell: shell_c,
        control: control_c,
        stdin: stdin_c,
        iopub: Box::new(Rx {
            name: "iopub",
            rx: iopub_rx,
        }),
        heartbeat: Channel {
            receiver: Box::new(Rx {
                name: "heartbeat",
                rx: hb_client_rx,
            }),
            sender: Arc::new(Tx {
                name: "heartbeat",
                tx: hb_to_kernel,
                routing: Routing::None,
            }),
        },
    };
    (kernel, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn router_semantics_add_and_strip_identity() {
        let (mut kernel, mut client) = pair();
        client
            .shell
            .sender
            .send(vec![Bytes::from_static(b"hello")])
            .await
            .unwrap();
        let got = kernel.shell.receiver.recv().await.unwrap();
        assert_eq!(got[0].as_ref(), CLIENT_IDENTITY);
        kernel.shell.sender.send(got).await.unwrap();
        let back = client.shell.receiver.recv().await.unwrap();
        assert_eq!(back, vec![Bytes::from_static(b"hello")]);
    }

    #[tokio::test]
    async fn heartbeat_echoes() {
        let (_kernel, mut client) = pair();
        client
            .heartbeat
            .sender
            .send(vec![Bytes::from_static(b"ping")])
            .await
            .unwrap();
        let echo = client.heartbeat.receiver.recv().await.unwrap();
        assert_eq!(echo[0].as_ref(), b"ping");
    }
}
