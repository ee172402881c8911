//! IOPub, kernel side: the kernel publishes straight into [`Xpub`], our
//! own XPUB socket.
//!
//! Publishing never waits on a subscriber: each has its own queue, bounded
//! at [`SUBSCRIBER_MESSAGES`] messages and [`SUBSCRIBER_BYTES`] bytes, and
//! one that stops reading loses messages (counted in [`IopubStats`],
//! logged once) without touching the daemon's memory or anyone else's
//! delivery. Because publishing is synchronous, a flush has nothing to
//! wait for: everything sent is already in the subscribers' queues.
//!
//! # Subscriptions
//!
//! XPUB sees each subscription arrive. The kernel answers it with
//! `iopub_welcome` (protocol 5.4), which goes into that subscriber's queue
//! before the subscription takes effect, so it is the first thing the
//! subscriber gets.
//!
//! # Late joiners at start
//!
//! A client that launches the kernel and connects at once (`jupyter
//! console`, a kernel manager) finds nothing listening yet and retries
//! every 100 ms per socket. Its shell DEALER can get through before its
//! IOPub SUB; a kernel that starts in milliseconds then answers the first
//! `kernel_info_request` and `execute_request` before the SUB has
//! subscribed, and a client waiting for that request's `status: idle`
//! would wait forever. So until the first subscription (at most
//! [`STARTUP_HOLD`] after the bind) what is published is held, and goes to
//! that first subscriber right after its welcome. Only messages nobody
//! could have received are held.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use skillkernel_protocol::connection::ChannelPort;
use skillkernel_protocol::ConnectionInfo;
use tokio::sync::watch;

use super::xpub::Xpub;
pub use super::xpub::{HELD_MESSAGES, SUBSCRIBER_BYTES, SUBSCRIBER_MESSAGES};
use crate::{
    FrameSender, Frames, IopubChannel, IopubControl, IopubStats, IopubWelcome, TransportError,
};

/// How long after the bind messages wait for a first subscriber; a client
/// that subscribes later has missed nothing a PUB socket would have kept.
pub const STARTUP_HOLD: Duration = Duration::from_secs(10);

/// How long the socket outlives the kernel's sender, so what is queued
/// reaches the wire (libzmq's linger).
const LINGER: Duration = Duration::from_millis(200);

struct IopubTx {
    xpub: Arc<Xpub>,
    /// Dropped with the kernel's last sender: the socket lingers, then
    /// closes.
    _open: watch::Sender<bool>,
}

#[async_trait]
impl FrameSender for IopubTx {
    async fn send(&self, frames: Frames) -> Result<(), TransportError> {
        self.xpub.publish(&frames);
        Ok(())
    }

    fn all_written(&self) -> bool {
        self.xpub.all_written()
    }
}

impl IopubControl for Xpub {
    fn set_welcome(&self, welcome: IopubWelcome) {
        Xpub::set_welcome(self, welcome);
    }

    fn stats(&self) -> IopubStats {
        Xpub::stats(self)
    }
}

pub(super) async fn bind_iopub(info: &mut ConnectionInfo) -> Result<IopubChannel, TransportError> {
    let (open, closed) = watch::channel(false);
    let (xpub, port) = Xpub::bind(&info.ip, info.iopub_port, STARTUP_HOLD, closed, LINGER)
        .await
        .map_err(|e| TransportError::Bind {
            endpoint: info.endpoint(ChannelPort::IoPub),
            reason: e.to_string(),
        })?;
    info.set_port(ChannelPort::IoPub, port);
    Ok(IopubChannel {
        sender: Arc::new(IopubTx {
            xpub: xpub.clone(),
            _open: open,
        }),
        control: xpub,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use skillkernel_protocol::ConnectionInfo;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    use super::{HELD_MESSAGES, SUBSCRIBER_MESSAGES};
    use crate::zmq::{connect, zmtp, ZmqTransport};
    use crate::{ClientSockets, Frames, KernelSockets, Transport};

    fn frames(text: &str) -> Frames {
        vec![
            Bytes::from_static(b"topic"),
            Bytes::copy_from_slice(text.as_bytes()),
        ]
    }

    async fn bound() -> (KernelSockets, ConnectionInfo) {
        let mut info = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
        let sockets = ZmqTransport.bind(&mut info).await.expect("bind");
        (sockets, info)
    }

    async fn texts(client: &mut ClientSockets, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..n {
            match timeout(Duration::from_secs(5), client.iopub.recv()).await {
                Ok(Ok(message)) => got.push(String::from_utf8_lossy(&message[1]).into_owned()),
                _ => break,
            }
        }
        got
    }

    /// A subscriber that subscribes to everything, reads its welcome (so
    /// the subscription is known to be in) and never reads again.
    async fn stalled(info: &ConnectionInfo) -> TcpStream {
        let mut stream = TcpStream::connect((info.ip.as_str(), info.iopub_port))
            .await
            .expect("connect");
        zmtp::handshake(&mut stream, "SUB", &["XPUB", "PUB"])
            .await
            .expect("handshake");
        stream
            .write_all(&zmtp::encode_message(&[Bytes::from_static(b"\x01")]))
            .await
            .expect("subscribe");
        loop {
            match zmtp::read(&mut stream, 1 << 20).await.expect("welcome") {
                zmtp::Incoming::Frame { more: false, .. } => break stream,
                _ => continue,
            }
        }
    }

    #[tokio::test]
    async fn what_is_published_before_the_first_subscriber_reaches_it_in_order() {
        let (kernel, info) = bound().await;
        kernel.iopub.sender.send(frames("starting")).await.unwrap();
        kernel.iopub.sender.send(frames("busy")).await.unwrap();
        // Nobody is connected: the reply path must not wait on IOPub.
        timeout(Duration::from_secs(1), kernel.iopub.sender.flush())
            .await
            .expect("flush with no subscriber returns at once")
            .unwrap();

        let mut client = connect(&info, b"late").await.expect("connect");
        let first = texts(&mut client, 2).await;
        // Published after the subscription: plain delivery, the positive
        // control for the held ones.
        kernel.iopub.sender.send(frames("idle")).await.unwrap();
        let then = texts(&mut client, 1).await;
        assert_eq!([first, then].concat(), ["starting", "busy", "idle"]);
    }

    #[tokio::test]
    async fn beyond_what_is_held_the_oldest_give_way() {
        let (kernel, info) = bound().await;
        for i in 0..HELD_MESSAGES + 5 {
            kernel
                .iopub
                .sender
                .send(frames(&format!("m{i}")))
                .await
                .unwrap();
        }
        kernel.iopub.sender.send(frames("idle")).await.unwrap();
        let mut client = connect(&info, b"late").await.expect("connect");
        let got = texts(&mut client, HELD_MESSAGES).await;
        assert_eq!(got.len(), HELD_MESSAGES);
        assert_eq!(
            got.last().map(String::as_str),
            Some("idle"),
            "the newest is kept"
        );
        assert_eq!(got[0], "m6", "the oldest gave way");
        assert_eq!(kernel.iopub.control.stats().dropped_before_subscriber, 6);
    }

    #[tokio::test]
    async fn what_is_held_still_goes_out_when_the_kernel_stops_publishing() {
        let (kernel, info) = bound().await;
        kernel
            .iopub
            .sender
            .send(frames("last words"))
            .await
            .unwrap();
        let mut client = connect(&info, b"late").await.expect("connect");
        // Connected; its subscription may not have arrived yet.
        drop(kernel);
        assert_eq!(texts(&mut client, 1).await, ["last words"]);
    }

    #[tokio::test]
    async fn each_subscriber_is_welcomed_first_and_alone() {
        let (kernel, info) = bound().await;
        kernel.iopub.control.set_welcome(Box::new(|topic| {
            vec![
                Bytes::from_static(b"welcome"),
                Bytes::from(format!("welcome {topic:?}")),
            ]
        }));
        kernel.iopub.sender.send(frames("held")).await.unwrap();
        let mut first = connect(&info, b"one").await.expect("connect");
        assert_eq!(texts(&mut first, 2).await, ["welcome []", "held"]);

        let mut second = connect(&info, b"two").await.expect("connect");
        assert_eq!(texts(&mut second, 1).await, ["welcome []"]);
        kernel.iopub.sender.send(frames("both")).await.unwrap();
        assert_eq!(texts(&mut second, 1).await, ["both"]);
        // The first sees the broadcast, not the second's welcome.
        assert_eq!(texts(&mut first, 1).await, ["both"]);
    }

    #[tokio::test]
    async fn a_subscription_before_the_welcome_is_set_is_welcomed_when_it_is() {
        let (kernel, info) = bound().await;
        let mut early = connect(&info, b"early").await.expect("connect");
        // Let the subscription arrive while no welcome is set (if it came
        // later, it would be welcomed the usual way: no false failure).
        tokio::time::sleep(Duration::from_millis(200)).await;
        kernel.iopub.control.set_welcome(Box::new(|topic| {
            vec![
                Bytes::from_static(b"welcome"),
                Bytes::from(format!("welcome {topic:?}")),
            ]
        }));
        kernel.iopub.sender.send(frames("first")).await.unwrap();
        assert_eq!(texts(&mut early, 2).await, ["welcome []", "first"]);
    }

    #[tokio::test]
    async fn a_subscriber_that_stops_reading_loses_messages_and_only_it_does() {
        let (kernel, info) = bound().await;
        kernel.iopub.control.set_welcome(Box::new(|_| {
            vec![Bytes::from_static(b"w"), Bytes::from_static(b"welcome")]
        }));
        let _stalled = stalled(&info).await;
        let mut reader = connect(&info, b"reader").await.expect("connect");
        assert_eq!(texts(&mut reader, 1).await, ["welcome"]);

        // 3 × the message bound, 16 KiB each: ~48 MiB, far beyond what the
        // stalled peer's socket buffers take. The reader keeps up.
        let payload = "x".repeat(16 * 1024);
        let mut received = 0;
        for chunk in 0..3 * SUBSCRIBER_MESSAGES / 500 {
            for i in 0..500 {
                let text = format!("{chunk}-{i}-{payload}");
                kernel.iopub.sender.send(frames(&text)).await.unwrap();
            }
            received += texts(&mut reader, 500).await.len();
        }
        assert_eq!(received, 3 * SUBSCRIBER_MESSAGES, "the reader lost nothing");
        let stats = kernel.iopub.control.stats();
        assert!(
            stats.dropped > 0,
            "the stalled subscriber lost messages: {stats:?}"
        );
        assert!(stats.queued_bytes <= super::SUBSCRIBER_BYTES, "{stats:?}");
        assert_eq!(stats.lagging, 1, "{stats:?}");
    }

    #[tokio::test]
    async fn a_peer_that_is_not_zmtp_is_closed_and_subscribers_are_served() {
        use tokio::io::AsyncReadExt;
        let (kernel, info) = bound().await;
        let mut http = TcpStream::connect((info.ip.as_str(), info.iopub_port))
            .await
            .unwrap();
        http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut sink = Vec::new();
        let closed = timeout(Duration::from_secs(5), http.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "the non-ZMTP peer is closed");

        let mut client = connect(&info, b"ok").await.expect("connect");
        kernel.iopub.sender.send(frames("served")).await.unwrap();
        assert_eq!(texts(&mut client, 1).await, ["served"]);
    }
}
