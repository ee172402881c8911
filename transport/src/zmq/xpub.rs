//! An XPUB socket of our own: one TCP listener, one task per subscriber,
//! and for each subscriber a queue bounded in messages and bytes.
//!
//! The `zeromq` crate cannot be used here: its PUB queues for each
//! subscriber without a bound (a client that stops reading grows the
//! daemon without limit), and its XPUB writes to subscribers one after
//! another, so one full subscriber blocks all. Here publishing never
//! waits: a message goes into the queue of each subscriber whose
//! subscription matches, or is dropped for that subscriber alone and
//! counted.
//!
//! # Architecture Invariant
//!
//! Locks are taken in one order: the socket's state, then a subscriber's
//! outbox. A subscription and the messages published around it are
//! therefore ordered: the subscriber's welcome goes into its outbox, then
//! its topic, both under the outbox lock, so nothing broadcast reaches it
//! before its welcome.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::{timeout, Instant};

use super::zmtp::{self, Incoming};
use crate::{Frames, IopubStats, IopubWelcome};

/// Messages one subscriber may have waiting before it loses new ones
/// (libzmq's default SNDHWM).
pub const SUBSCRIBER_MESSAGES: usize = 1000;
/// Bytes one subscriber may have waiting before it loses new ones.
pub const SUBSCRIBER_BYTES: usize = 16 * 1024 * 1024;
/// Messages held for the first subscriber; beyond, the oldest give way.
pub const HELD_MESSAGES: usize = 1000;
/// Connections served at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a peer has to finish the ZMTP handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Subscriptions one subscriber may hold, and their longest topic.
const MAX_TOPICS: usize = 1024;
const MAX_INCOMING_BYTES: u64 = 64 * 1024;

/// The socket, shared by the publisher, the listener and the subscribers'
/// tasks.
pub struct Xpub {
    state: Mutex<State>,
    welcome: Mutex<Option<IopubWelcome>>,
    connections: AtomicUsize,
    dropped: AtomicU64,
    dropped_held: AtomicU64,
}

struct State {
    subscribers: HashMap<u64, Arc<Subscriber>>,
    next_id: u64,
    /// Until the first subscription, or `None` once it came or the hold
    /// ran out.
    held: Option<Held>,
}

struct Held {
    until: Instant,
    messages: VecDeque<(Bytes, Bytes)>,
}

struct Subscriber {
    peer: SocketAddr,
    outbox: Mutex<Outbox>,
    ready: Notify,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Outbox {
    /// Whole messages in wire form.
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// Prefixes of the first frame this subscriber asked for.
    topics: Vec<Bytes>,
}

impl Outbox {
    fn matches(&self, topic: &[u8]) -> bool {
        self.topics.iter().any(|t| topic.starts_with(t))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves plain data behind; go on.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Subscriber {
    /// Queues `wire` unless the queue is at its bounds; `false` when the
    /// message was dropped.
    fn offer(&self, outbox: &mut Outbox, wire: &Bytes) -> bool {
        if outbox.queue.len() >= SUBSCRIBER_MESSAGES || outbox.bytes + wire.len() > SUBSCRIBER_BYTES
        {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 {
                tracing::warn!(
                    peer = %self.peer,
                    "IOPub subscriber is not reading; dropping its messages until it catches up"
                );
            }
            return false;
        }
        outbox.bytes += wire.len();
        outbox.queue.push_back(wire.clone());
        self.ready.notify_one();
        true
    }
}

impl Xpub {
    /// Binds `ip:port` (0 picks a port) and starts accepting. Returns the
    /// socket and the bound port; the socket closes once `closed` turns
    /// true and what was queued has had `linger` to leave.
    pub async fn bind(
        ip: &str,
        port: u16,
        hold: Duration,
        closed: watch::Receiver<bool>,
        linger: Duration,
    ) -> std::io::Result<(Arc<Xpub>, u16)> {
        let ip = if ip == "*" { "0.0.0.0" } else { ip };
        let listener = TcpListener::bind((ip, port)).await?;
        let port = listener.local_addr()?.port();
        let xpub = Arc::new(Xpub {
            state: Mutex::new(State {
                subscribers: HashMap::new(),
                next_id: 0,
                held: Some(Held {
                    until: Instant::now() + hold,
                    messages: VecDeque::new(),
                }),
            }),
            welcome: Mutex::new(None),
            connections: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            dropped_held: AtomicU64::new(0),
        });
        tokio::spawn(accept(xpub.clone(), listener, closed, linger));
        Ok((xpub, port))
    }

    /// Sets what answers each subscription.
    pub fn set_welcome(&self, welcome: IopubWelcome) {
        *lock(&self.welcome) = Some(welcome);
    }

    /// Hands `frames` to every subscriber whose subscription matches its
    /// first frame. Never waits.
    pub fn publish(&self, frames: &Frames) {
        let topic = frames.first().cloned().unwrap_or_default();
        let mut wire: Option<Bytes> = None;
        let mut state = lock(&self.state);
        if let Some(held) = &mut state.held {
            if Instant::now() < held.until {
                if held.messages.len() == HELD_MESSAGES {
                    held.messages.pop_front();
                    let n = self.dropped_held.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(
                            dropped = n,
                            "IOPub held too much before its first subscriber; dropping the oldest"
                        );
                    }
                }
                held.messages
                    .push_back((topic, zmtp::encode_message(frames)));
                return;
            }
            if !held.messages.is_empty() {
                tracing::debug!(
                    dropped = held.messages.len(),
                    "no IOPub subscriber since start; dropping what was published"
                );
            }
            state.held = None;
        }
        for subscriber in state.subscribers.values() {
            let mut outbox = lock(&subscriber.outbox);
            if outbox.matches(&topic) {
                let wire = wire.get_or_insert_with(|| zmtp::encode_message(frames));
                if !subscriber.offer(&mut outbox, wire) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    pub fn stats(&self) -> IopubStats {
        let state = lock(&self.state);
        let mut stats = IopubStats {
            subscribers: state.subscribers.len(),
            dropped: self.dropped.load(Ordering::Relaxed),
            dropped_before_subscriber: self.dropped_held.load(Ordering::Relaxed),
            ..IopubStats::default()
        };
        for subscriber in state.subscribers.values() {
            let outbox = lock(&subscriber.outbox);
            stats.queued_bytes += outbox.bytes;
            if outbox.queue.len() >= SUBSCRIBER_MESSAGES / 2 || outbox.bytes >= SUBSCRIBER_BYTES / 2
            {
                stats.lagging += 1;
            }
        }
        stats
    }

    /// A new subscription from `subscriber`: its welcome, what was held
    /// for the first subscriber, then the topic, in that order.
    fn subscribe(&self, subscriber: &Subscriber, topic: Bytes) {
        let welcome = lock(&self.welcome).as_ref().map(|w| w(&topic));
        let mut state = lock(&self.state);
        let held = state.held.take();
        let mut outbox = lock(&subscriber.outbox);
        if let Some(welcome) = welcome {
            subscriber.offer(&mut outbox, &zmtp::encode_message(&welcome));
        }
        if let Some(held) = held {
            for (held_topic, wire) in held.messages {
                if held_topic.starts_with(&topic) {
                    subscriber.offer(&mut outbox, &wire);
                }
            }
        }
        outbox.topics.push(topic);
    }

    fn unsubscribe(&self, subscriber: &Subscriber, topic: &[u8]) {
        let mut outbox = lock(&subscriber.outbox);
        if let Some(i) = outbox.topics.iter().position(|t| t == topic) {
            outbox.topics.swap_remove(i);
        }
    }
}

/// Accepts connections until the socket is closed, then lingers.
async fn accept(
    xpub: Arc<Xpub>,
    listener: TcpListener,
    mut closed: watch::Receiver<bool>,
    linger: Duration,
) {
    // Tells every connection to stop after the linger.
    let (stop_tx, stop) = watch::channel(false);
    let mut refused = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if xpub.connections.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(%peer, refused, "too many IOPub connections; closing new ones");
                        }
                        continue;
                    }
                    xpub.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(xpub.clone(), stream, peer, stop.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "IOPub accept failed");
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
    // As libzmq's linger: what is queued gets a moment to reach the wire.
    tokio::time::sleep(linger).await;
    let _ = stop_tx.send(true);
}

/// One connection: handshake, then read subscriptions and write the
/// outbox until either side ends.
async fn serve(
    xpub: Arc<Xpub>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    match timeout(
        HANDSHAKE_TIMEOUT,
        zmtp::handshake(&mut stream, "XPUB", &["SUB", "XSUB"]),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "IOPub connection refused");
            xpub.connections.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "IOPub connection closed: no handshake in time");
            xpub.connections.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    }
    let subscriber = Arc::new(Subscriber {
        peer,
        outbox: Mutex::new(Outbox::default()),
        ready: Notify::new(),
        dropped: AtomicU64::new(0),
    });
    let id = {
        let mut state = lock(&xpub.state);
        let id = state.next_id;
        state.next_id += 1;
        state.subscribers.insert(id, subscriber.clone());
        id
    };
    let (read_half, write_half) = stream.into_split();
    let (pong_tx, pong_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let ended = tokio::select! {
        r = read_subscriptions(&xpub, &subscriber, read_half, pong_tx) => r,
        r = write_outbox(&subscriber, write_half, pong_rx) => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    lock(&xpub.state).subscribers.remove(&id);
    xpub.connections.fetch_sub(1, Ordering::Relaxed);
    let dropped = subscriber.dropped.load(Ordering::Relaxed);
    match ended {
        Err(e) => tracing::debug!(%peer, error = %e, dropped, "IOPub subscriber gone"),
        Ok(()) if dropped > 0 => {
            tracing::info!(%peer, dropped, "IOPub subscriber gone; it missed messages")
        }
        Ok(()) => tracing::debug!(%peer, "IOPub subscriber gone"),
    }
}

async fn read_subscriptions(
    xpub: &Xpub,
    subscriber: &Subscriber,
    mut stream: tokio::net::tcp::OwnedReadHalf,
    pongs: tokio::sync::mpsc::Sender<Bytes>,
) -> Result<(), zmtp::ZmtpError> {
    // Frames after the first of a multipart message are not subscriptions.
    let mut in_message = false;
    loop {
        let incoming = match zmtp::read(&mut stream, MAX_INCOMING_BYTES).await {
            Ok(incoming) => incoming,
            Err(zmtp::ZmtpError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let (subscribe, topic) = match incoming {
            Incoming::Frame { body, more } => {
                let first = !in_message;
                in_message = more;
                match body.first() {
                    Some(&1) if first && !more => (true, body.slice(1..)),
                    Some(&0) if first && !more => (false, body.slice(1..)),
                    _ => continue,
                }
            }
            Incoming::Command { name, data } => match name.as_str() {
                "SUBSCRIBE" => (true, data),
                "CANCEL" => (false, data),
                "PING" => {
                    // A peer that floods PINGs without reading gets no more
                    // PONGs, not more memory.
                    let _ = pongs.try_send(zmtp::pong(&data));
                    continue;
                }
                "ERROR" => {
                    return Err(zmtp::ZmtpError::PeerError(
                        String::from_utf8_lossy(&data).into(),
                    ))
                }
                _ => continue,
            },
        };
        if subscribe {
            if lock(&subscriber.outbox).topics.len() >= MAX_TOPICS {
                return Err(zmtp::ZmtpError::Handshake("too many subscriptions"));
            }
            xpub.subscribe(subscriber, topic);
        } else {
            xpub.unsubscribe(subscriber, &topic);
        }
    }
}

async fn write_outbox(
    subscriber: &Subscriber,
    stream: tokio::net::tcp::OwnedWriteHalf,
    mut pongs: tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<(), zmtp::ZmtpError> {
    let mut stream = BufWriter::with_capacity(16 * 1024, stream);
    loop {
        // A message leaves the queue when it is written, but its bytes stay
        // counted until then: a stalled peer holds the bounds and one
        // message more, never a second queue's worth.
        let next = lock(&subscriber.outbox).queue.pop_front();
        let Some(wire) = next else {
            stream.flush().await?;
            tokio::select! {
                () = subscriber.ready.notified() => {}
                pong = pongs.recv() => match pong {
                    Some(pong) => stream.write_all(&pong).await?,
                    None => return Ok(()),
                },
            }
            continue;
        };
        stream.write_all(&wire).await?;
        let mut outbox = lock(&subscriber.outbox);
        outbox.bytes = outbox.bytes.saturating_sub(wire.len());
    }
}
