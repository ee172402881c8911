//! IOPub, kernel side: one task feeds a PUB socket from a bounded queue.
//!
//! Publishing never waits on a subscriber. The kernel's queue holds up to
//! [`IOPUB_HIGH_WATER_MARK`] messages and drops beyond it, as libzmq drops
//! at its high-water mark; the crate's PUB socket then gives each
//! subscriber its own queue, so one that stops reading loses messages
//! without holding up the others. (The crate's XPUB, which would report
//! subscriptions for `iopub_welcome`, writes to subscribers one after
//! another and blocks on a full one, starving everyone else; PUB is chosen
//! for that reason.)
//!
//! # Late joiners at start
//!
//! A client that launches the kernel and connects at once (`jupyter
//! console`, a kernel manager) finds nothing listening yet and retries
//! every 100 ms per socket. Its shell DEALER can get through before its
//! IOPub SUB; a kernel that starts in milliseconds then answers the first
//! `kernel_info_request` and `execute_request` before the SUB has
//! subscribed. PUB drops what nobody subscribes to, and a client waiting
//! for that request's `status: idle` waits forever.
//!
//! So until the first subscriber connects (at most [`STARTUP_HOLD`] after
//! the bind), the task holds what is published, and hands it to the socket
//! [`SUBSCRIPTION_GRACE`] after that peer's handshake: its subscription
//! follows the handshake on the same connection. Only messages nobody could
//! have received are held; from then on IOPub is plain PUB.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::channel::mpsc as monitor;
use futures::StreamExt;
use skillkernel_protocol::connection::ChannelPort;
use skillkernel_protocol::ConnectionInfo;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, Instant};
use zeromq::prelude::*;
use zeromq::{PubSocket, SocketEvent};

use super::{bind, to_zmq};
use crate::{FrameSender, Frames, IopubChannel, TransportError};

/// IOPub messages queued beyond this are dropped (libzmq's default SNDHWM).
pub const IOPUB_HIGH_WATER_MARK: usize = 1000;

/// How long after the bind messages wait for a first subscriber; a client
/// that connects later has missed nothing a PUB socket would have kept.
pub const STARTUP_HOLD: Duration = Duration::from_secs(10);

/// Time between a subscriber's handshake and its subscription being read.
pub const SUBSCRIPTION_GRACE: Duration = Duration::from_millis(100);

/// How long the socket outlives the kernel's sender.
const LINGER: Duration = Duration::from_millis(200);

enum IopubItem {
    Frames(Frames),
    Flush(oneshot::Sender<()>),
}

struct IopubTx {
    queue: mpsc::Sender<IopubItem>,
    dropped: Arc<AtomicU64>,
}

#[async_trait]
impl FrameSender for IopubTx {
    async fn send(&self, frames: Frames) -> Result<(), TransportError> {
        match self.queue.try_send(IopubItem::Frames(frames)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n,
                        "IOPub queue full; dropping messages for slow subscribers"
                    );
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TransportError::Closed("iopub")),
        }
    }

    async fn flush(&self) -> Result<(), TransportError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(IopubItem::Flush(tx))
            .await
            .map_err(|_| TransportError::Closed("iopub"))?;
        rx.await.map_err(|_| TransportError::Closed("iopub"))
    }
}

pub(super) async fn bind_iopub(info: &mut ConnectionInfo) -> Result<IopubChannel, TransportError> {
    let mut socket = PubSocket::new();
    // Before the bind, so no connection goes unreported.
    let peers = socket.monitor();
    bind(&mut socket, info, ChannelPort::IoPub).await?;
    let (queue, items) = mpsc::channel::<IopubItem>(IOPUB_HIGH_WATER_MARK);
    tokio::spawn(async move {
        let mut items = items;
        let Some(held) = hold_until_first_subscriber(&mut items, peers).await else {
            return;
        };
        let mut socket = socket;
        for frames in held.frames {
            publish(&mut socket, frames).await;
        }
        for done in held.flushes {
            let _ = done.send(());
        }
        while let Some(item) = items.recv().await {
            match item {
                IopubItem::Frames(frames) => publish(&mut socket, frames).await,
                IopubItem::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
        // The kernel is done publishing; as libzmq's linger does, give the
        // subscribers' queues a moment to reach the wire before the socket
        // goes (a process that exits does not wait).
        sleep(LINGER).await;
    });
    Ok(IopubChannel {
        sender: Arc::new(IopubTx {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
        }),
    })
}

async fn publish(socket: &mut PubSocket, frames: Frames) {
    match to_zmq(frames) {
        // PUB hands the message to each subscriber's own queue and
        // returns; it never waits on a subscriber.
        Ok(msg) => {
            if let Err(e) = socket.send(msg).await {
                tracing::debug!(error = %e, "IOPub send failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "IOPub message not sendable"),
    }
}

/// What was published, and flushes asked for, while the first subscriber
/// was on its way.
#[derive(Default)]
struct Held {
    frames: VecDeque<Frames>,
    flushes: Vec<oneshot::Sender<()>>,
}

/// Holds messages until the first subscriber has had time to subscribe, or
/// drops them once [`STARTUP_HOLD`] passes with none. Beyond
/// [`IOPUB_HIGH_WATER_MARK`] the oldest give way, so a request's closing
/// `idle` is never the one lost. `None` when the kernel closed its sender
/// with nobody connected.
async fn hold_until_first_subscriber(
    items: &mut mpsc::Receiver<IopubItem>,
    mut peers: monitor::Receiver<SocketEvent>,
) -> Option<Held> {
    let mut held = Held::default();
    let mut dropped = 0u64;
    let give_up = sleep(STARTUP_HOLD);
    // Reset to the end of the grace once a subscriber has connected.
    let release = sleep(STARTUP_HOLD);
    tokio::pin!(give_up, release);
    let mut subscriber_seen = false;
    // The kernel closed its sender: what is held still goes out.
    let mut closed = false;
    loop {
        tokio::select! {
            item = items.recv(), if !closed => match item {
                None if subscriber_seen => closed = true,
                None => return None,
                Some(IopubItem::Frames(frames)) => {
                    if held.frames.len() == IOPUB_HIGH_WATER_MARK {
                        held.frames.pop_front();
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            tracing::warn!(dropped, "IOPub held too much before its first subscriber; dropping the oldest");
                        }
                    }
                    held.frames.push_back(frames);
                }
                // With nobody connected, nobody can receive what was held
                // before the caller's reply; once someone has, the flush
                // waits until the held messages reach the socket.
                Some(IopubItem::Flush(done)) if !subscriber_seen => {
                    let _ = done.send(());
                }
                Some(IopubItem::Flush(done)) => held.flushes.push(done),
            },
            event = peers.next(), if !subscriber_seen => {
                if matches!(event, Some(SocketEvent::Accepted(..)) | None) {
                    subscriber_seen = true;
                    release.as_mut().reset(Instant::now() + SUBSCRIPTION_GRACE);
                }
            }
            () = &mut release, if subscriber_seen => return Some(held),
            () = &mut give_up, if !subscriber_seen => {
                if !held.frames.is_empty() {
                    tracing::debug!(
                        dropped = held.frames.len(),
                        "no IOPub subscriber since start; dropping what was published"
                    );
                }
                return Some(Held::default());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use skillkernel_protocol::ConnectionInfo;
    use tokio::time::timeout;

    use super::{IOPUB_HIGH_WATER_MARK, SUBSCRIPTION_GRACE};
    use crate::zmq::{connect, ZmqTransport};
    use crate::{Frames, KernelSockets, Transport};

    fn frames(text: &'static str) -> Frames {
        vec![
            Bytes::from_static(b"topic"),
            Bytes::from_static(text.as_bytes()),
        ]
    }

    async fn bound() -> (KernelSockets, ConnectionInfo) {
        let mut info = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
        let sockets = ZmqTransport.bind(&mut info).await.expect("bind");
        (sockets, info)
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
        // Published after the subscriber connected: plain PUB delivery, the
        // positive control for the held ones.
        kernel.iopub.sender.send(frames("idle")).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let message = timeout(Duration::from_secs(5), client.iopub.recv())
                .await
                .expect("a held message arrives")
                .unwrap();
            got.push(String::from_utf8_lossy(&message[1]).into_owned());
        }
        assert_eq!(got, ["starting", "busy", "idle"]);
    }

    async fn texts(client: &mut crate::ClientSockets, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..n {
            match timeout(Duration::from_secs(5), client.iopub.recv()).await {
                Ok(Ok(message)) => got.push(String::from_utf8_lossy(&message[1]).into_owned()),
                _ => break,
            }
        }
        got
    }

    #[tokio::test]
    async fn beyond_the_high_water_mark_the_oldest_held_give_way() {
        let (kernel, info) = bound().await;
        let numbered: Vec<&'static str> = (0..IOPUB_HIGH_WATER_MARK + 5)
            .map(|i| &*Box::leak(format!("m{i}").into_boxed_str()))
            .collect();
        // The queue to the task drops when full; send at the task's pace.
        for text in &numbered {
            kernel.iopub.sender.send(frames(text)).await.unwrap();
            tokio::task::yield_now().await;
        }
        kernel.iopub.sender.send(frames("idle")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut client = connect(&info, b"late").await.expect("connect");
        let got = texts(&mut client, IOPUB_HIGH_WATER_MARK).await;
        assert_eq!(got.len(), IOPUB_HIGH_WATER_MARK);
        assert_eq!(
            got.last().map(String::as_str),
            Some("idle"),
            "the newest is kept"
        );
        assert_ne!(got[0], "m0", "the oldest gave way");
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
        // Inside the grace: the subscriber is known, its subscription may
        // not be.
        tokio::time::sleep(SUBSCRIPTION_GRACE / 2).await;
        drop(kernel);
        assert_eq!(texts(&mut client, 1).await, ["last words"]);
    }
}
