//! What the sockets of our own share: the accept loop and, for each
//! connected peer, an outbox bounded in messages and bytes and the task
//! that writes it to the wire.
//!
//! A peer that stops reading fills its outbox and then loses new messages
//! (counted, logged once); it never makes a sender wait and never costs
//! more than its bounds.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::timeout;

use super::zmtp::{self, ZmtpError};

/// Messages one peer may have waiting before it loses new ones (libzmq's
/// default SNDHWM).
pub const PEER_MESSAGES: usize = 1000;
/// Bytes one peer may have waiting before it loses new ones.
pub const PEER_BYTES: usize = 16 * 1024 * 1024;
/// Connections a socket serves at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a peer has to finish the ZMTP handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections a socket lets handshake at once. A real client finishes in
/// milliseconds; beyond this, the connection handshaking longest is
/// closed to make room, so connections that never handshake cannot hold
/// the socket's slots for long.
pub const MAX_HANDSHAKING: usize = 128;

/// Locks `m`; a panic while holding one of these locks leaves plain data
/// behind, so go on with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Messages waiting for one peer, and `X`: state the socket keeps under
/// the same lock (XPUB's subscriptions).
#[derive(Default)]
pub struct Queue<X> {
    /// Whole messages in wire form.
    messages: VecDeque<Bytes>,
    bytes: usize,
    /// Something was queued and has not been flushed to the socket yet.
    unwritten: bool,
    pub extra: X,
}

impl<X> Queue<X> {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether everything queued has been written and flushed.
    pub fn is_written(&self) -> bool {
        !self.unwritten
    }

    pub fn is_half_full(&self) -> bool {
        self.messages.len() >= PEER_MESSAGES / 2 || self.bytes >= PEER_BYTES / 2
    }
}

/// One connected peer's outbox.
pub struct Outbox<X> {
    pub peer: SocketAddr,
    channel: &'static str,
    queue: Mutex<Queue<X>>,
    ready: Notify,
    dropped: AtomicU64,
}

impl<X: Default> Outbox<X> {
    pub fn new(channel: &'static str, peer: SocketAddr) -> Self {
        Outbox {
            peer,
            channel,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }
}

impl<X> Outbox<X> {
    pub fn lock(&self) -> MutexGuard<'_, Queue<X>> {
        lock(&self.queue)
    }

    /// Queues `wire` unless the queue is at its bounds; `false` when the
    /// message was dropped. A message larger than the byte bound still
    /// goes to a peer with nothing pending (one such message at a time).
    pub fn offer(&self, queue: &mut Queue<X>, wire: &Bytes) -> bool {
        let over_bytes = queue.bytes > 0 && queue.bytes + wire.len() > PEER_BYTES;
        if queue.messages.len() >= PEER_MESSAGES || over_bytes {
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    channel = self.channel,
                    peer = %self.peer,
                    "peer is not reading; dropping its messages until it catches up"
                );
            }
            return false;
        }
        queue.bytes += wire.len();
        queue.unwritten = true;
        queue.messages.push_back(wire.clone());
        self.ready.notify_one();
        true
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes the outbox to the peer until the connection fails; also
    /// writes the PONGs that answer its PINGs.
    pub async fn write(
        &self,
        stream: OwnedWriteHalf,
        mut pongs: mpsc::Receiver<Bytes>,
    ) -> Result<(), ZmtpError> {
        let mut stream = BufWriter::with_capacity(16 * 1024, stream);
        loop {
            // A message leaves the queue when it is written, but its bytes
            // stay counted until then: a stalled peer holds the bounds and
            // one message more, never a second queue's worth.
            let next = self.lock().messages.pop_front();
            let Some(wire) = next else {
                stream.flush().await?;
                {
                    let mut queue = self.lock();
                    if queue.messages.is_empty() {
                        queue.unwritten = false;
                    }
                }
                tokio::select! {
                    () = self.ready.notified() => {}
                    pong = pongs.recv() => match pong {
                        Some(pong) => stream.write_all(&pong).await?,
                        None => return Ok(()),
                    },
                }
                continue;
            };
            stream.write_all(&wire).await?;
            let mut queue = self.lock();
            queue.bytes = queue.bytes.saturating_sub(wire.len());
        }
    }

    /// Logs the end of the connection, saying what the peer missed.
    pub fn log_end(&self, ended: &Result<(), ZmtpError>) {
        let (channel, peer, dropped) = (self.channel, self.peer, self.dropped());
        match ended {
            Err(e) => tracing::debug!(channel, %peer, error = %e, dropped, "peer gone"),
            Ok(()) if dropped > 0 => {
                tracing::info!(channel, %peer, dropped, "peer gone; it missed messages")
            }
            Ok(()) => tracing::debug!(channel, %peer, "peer gone"),
        }
    }
}

/// A connection just accepted, for its socket's task to serve.
pub struct Connection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Turns true when the socket stops.
    pub stop: watch::Receiver<bool>,
    slot: Option<HandshakeSlot>,
}

/// Connections still handshaking, oldest first, each with the sender
/// that closes it.
type Handshaking = Arc<Mutex<VecDeque<(u64, oneshot::Sender<()>)>>>;

/// A place among the connections handshaking; given up when dropped.
struct HandshakeSlot {
    id: u64,
    handshaking: Handshaking,
    /// Fires when a newer connection needed the room.
    evicted: oneshot::Receiver<()>,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        lock(&self.handshaking).retain(|(id, _)| *id != self.id);
    }
}

impl Connection {
    /// The ZMTP handshake as `socket_type`, accepting peers of the types
    /// in `accepts`: the peer's properties, or `None` (logged) when it
    /// failed, took longer than [`HANDSHAKE_TIMEOUT`], the socket stopped
    /// or newer connections needed the room.
    pub async fn handshake(
        &mut self,
        channel: &'static str,
        socket_type: &str,
        accepts: &[&str],
    ) -> Option<HashMap<String, Bytes>> {
        let peer = self.peer;
        let mut slot = self.slot.take()?;
        let handshake = timeout(
            HANDSHAKE_TIMEOUT,
            zmtp::handshake(&mut self.stream, socket_type, accepts),
        );
        let done = tokio::select! {
            // A handshake that completes is kept even if an eviction
            // came in the same instant.
            biased;
            done = handshake => done,
            _ = self.stop.wait_for(|s| *s) => return None,
            _ = &mut slot.evicted => {
                tracing::info!(channel, %peer, "connection closed: still handshaking when newer ones needed the room");
                return None;
            }
        };
        match done {
            Ok(Ok(properties)) => Some(properties),
            Ok(Err(e)) => {
                tracing::info!(channel, %peer, error = %e, "connection refused");
                None
            }
            Err(_) => {
                tracing::info!(channel, %peer, "connection closed: no handshake in time");
                None
            }
        }
    }
}

/// Accepts connections on `listener` and hands each to `serve`. Once
/// `closed` turns true (or its sender is dropped) the listener goes at
/// once and the connections get `linger` to send what is queued, as
/// libzmq's linger.
pub async fn accept<F, Fut>(
    channel: &'static str,
    listener: TcpListener,
    mut closed: watch::Receiver<bool>,
    linger: Duration,
    serve: F,
) where
    F: Fn(Connection) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop) = watch::channel(false);
    let connections = Arc::new(AtomicUsize::new(0));
    let handshaking: Handshaking = Arc::default();
    let mut next_id = 0u64;
    let mut refused = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(channel, %peer, refused, "too many connections; closing new ones");
                        }
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let (evict, evicted) = oneshot::channel();
                    {
                        let mut waiting = lock(&handshaking);
                        if waiting.len() >= MAX_HANDSHAKING {
                            if let Some((_, oldest)) = waiting.pop_front() {
                                let _ = oldest.send(());
                            }
                        }
                        waiting.push_back((next_id, evict));
                    }
                    let slot = HandshakeSlot {
                        id: next_id,
                        handshaking: handshaking.clone(),
                        evicted,
                    };
                    next_id += 1;
                    connections.fetch_add(1, Ordering::Relaxed);
                    let served = serve(Connection {
                        stream,
                        peer,
                        stop: stop.clone(),
                        slot: Some(slot),
                    });
                    let connections = connections.clone();
                    tokio::spawn(async move {
                        served.await;
                        connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    tracing::debug!(channel, error = %e, "accept failed");
                    // Out of descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = closed.changed() => {
                if changed.is_err() || *closed.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    tokio::time::sleep(linger).await;
    let _ = stop_tx.send(true);
}

/// Binds a TCP listener on `ip:port` (`*` for every address, port 0 for
/// any free one) and returns it with its port.
pub async fn listen(ip: &str, port: u16) -> std::io::Result<(TcpListener, u16)> {
    let ip = if ip == "*" { "0.0.0.0" } else { ip };
    let listener = TcpListener::bind((ip, port)).await?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message over the byte bound (a large display, a long history
    /// reply) still reaches a peer with nothing pending; a second one
    /// waits its turn like any message over the bound.
    #[test]
    fn a_message_larger_than_the_bound_goes_to_a_peer_with_nothing_pending() {
        let outbox: Outbox<()> = Outbox::new("shell", "127.0.0.1:1".parse().unwrap());
        let big = Bytes::from(vec![0u8; PEER_BYTES + 1]);
        let small = Bytes::from_static(b"small");
        let mut queue = outbox.lock();
        assert!(outbox.offer(&mut queue, &big));
        assert!(!outbox.offer(&mut queue, &big), "one at a time");
        assert!(
            !outbox.offer(&mut queue, &small),
            "the bound holds while it is pending"
        );
        assert_eq!(outbox.dropped(), 2);
        let mut empty = Queue::<()>::default();
        assert!(outbox.offer(&mut empty, &small));
    }
}
