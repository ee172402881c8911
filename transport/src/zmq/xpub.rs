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
//! before its welcome. A subscription that comes before the welcome is
//! set (a client that knew the port before the kernel was ready) is
//! welcomed when it is set, before anything is published.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::peer::{self, lock, Connection, Outbox};
use super::zmtp::{self, Incoming, ZmtpError};
use crate::{Frames, IopubStats, IopubWelcome};

pub use super::peer::{PEER_BYTES as SUBSCRIBER_BYTES, PEER_MESSAGES as SUBSCRIBER_MESSAGES};
/// Messages held for the first subscriber; beyond, the oldest give way.
pub const HELD_MESSAGES: usize = 1000;
/// Bytes held for the first subscriber; beyond, the oldest give way.
pub const HELD_BYTES: usize = SUBSCRIBER_BYTES;
/// Subscriptions remembered for a welcome not set yet.
const WAITING_FOR_WELCOME: usize = 1024;
/// Subscriptions one subscriber may hold, and the longest subscription
/// message.
const MAX_TOPICS: usize = 1024;
/// All of one subscriber's topics together (a Jupyter client has one, "").
const MAX_TOPIC_BYTES: usize = 64 * 1024;
const MAX_INCOMING_BYTES: u64 = 64 * 1024;

/// A subscriber: its outbox, with its subscriptions (prefixes of the first
/// frame) kept under the same lock.
type Subscriber = Outbox<Vec<Bytes>>;

fn matches(topics: &[Bytes], topic: &[u8]) -> bool {
    topics.iter().any(|t| topic.starts_with(t))
}

/// The socket, shared by the publisher, the listener and the subscribers'
/// tasks.
pub struct Xpub {
    state: Mutex<State>,
    welcome: Mutex<Welcome>,
    dropped: AtomicU64,
    dropped_held: AtomicU64,
}

enum Welcome {
    /// Not set yet: the subscriptions that came meanwhile.
    Waiting(Vec<(Weak<Subscriber>, Bytes)>),
    Set(IopubWelcome),
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
    bytes: usize,
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
        let (listener, port) = peer::listen(ip, port).await?;
        let xpub = Arc::new(Xpub {
            state: Mutex::new(State {
                subscribers: HashMap::new(),
                next_id: 0,
                held: Some(Held {
                    until: Instant::now() + hold,
                    messages: VecDeque::new(),
                    bytes: 0,
                }),
            }),
            welcome: Mutex::new(Welcome::Waiting(Vec::new())),
            dropped: AtomicU64::new(0),
            dropped_held: AtomicU64::new(0),
        });
        let socket = xpub.clone();
        tokio::spawn(peer::accept(
            "iopub",
            listener,
            closed,
            linger,
            move |connection| serve(socket.clone(), connection),
        ));
        Ok((xpub, port))
    }

    /// Sets what answers each subscription, and answers those that came
    /// before it.
    pub fn set_welcome(&self, welcome: IopubWelcome) {
        let mut slot = lock(&self.welcome);
        let waiting = match std::mem::replace(&mut *slot, Welcome::Set(welcome)) {
            Welcome::Waiting(waiting) => waiting,
            Welcome::Set(_) => Vec::new(),
        };
        let Welcome::Set(welcome) = &*slot else {
            return;
        };
        for (subscriber, topic) in waiting {
            if let Some(subscriber) = subscriber.upgrade() {
                let mut outbox = subscriber.lock();
                subscriber.offer(&mut outbox, &zmtp::encode_message(&welcome(&topic)));
            }
        }
    }

    /// Hands `frames` to every subscriber whose subscription matches its
    /// first frame. Never waits.
    pub fn publish(&self, frames: &Frames) {
        let topic = frames.first().cloned().unwrap_or_default();
        let mut wire: Option<Bytes> = None;
        let mut state = lock(&self.state);
        if let Some(held) = &mut state.held {
            if Instant::now() < held.until {
                let wire = zmtp::encode_message(frames);
                while !held.messages.is_empty()
                    && (held.messages.len() == HELD_MESSAGES
                        || held.bytes + wire.len() > HELD_BYTES)
                {
                    if let Some((_, old)) = held.messages.pop_front() {
                        held.bytes -= old.len();
                    }
                    let n = self.dropped_held.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(
                            dropped = n,
                            "IOPub held too much before its first subscriber; dropping the oldest"
                        );
                    }
                }
                held.bytes += wire.len();
                held.messages.push_back((topic, wire));
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
            let mut outbox = subscriber.lock();
            if matches(&outbox.extra, &topic) {
                let wire = wire.get_or_insert_with(|| zmtp::encode_message(frames));
                if !subscriber.offer(&mut outbox, wire) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether every subscriber's queue has been written to its socket.
    pub fn all_written(&self) -> bool {
        let state = lock(&self.state);
        state.subscribers.values().all(|s| s.lock().is_written())
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
            let outbox = subscriber.lock();
            stats.queued_bytes += outbox.bytes();
            stats.lagging += usize::from(outbox.is_half_full());
        }
        stats
    }

    /// A new subscription from `subscriber`: its welcome, what was held
    /// for the first subscriber, then the topic, in that order.
    fn subscribe(&self, subscriber: &Arc<Subscriber>, topic: Bytes) {
        let welcome = match &mut *lock(&self.welcome) {
            Welcome::Set(welcome) => Some(welcome(&topic)),
            Welcome::Waiting(waiting) => {
                waiting.retain(|(s, _)| s.strong_count() > 0);
                if waiting.len() < WAITING_FOR_WELCOME {
                    waiting.push((Arc::downgrade(subscriber), topic.clone()));
                } else {
                    tracing::warn!(
                        peer = %subscriber.peer,
                        "too many subscriptions before the kernel was ready; this one gets no iopub_welcome"
                    );
                }
                None
            }
        };
        let mut state = lock(&self.state);
        let held = state.held.take();
        let mut outbox = subscriber.lock();
        if let Some(welcome) = welcome {
            subscriber.offer(&mut outbox, &zmtp::encode_message(&welcome));
        }
        // A hold that ran out with nothing published since is not
        // delivered: a subscriber that late has missed nothing.
        if let Some(held) = held.filter(|h| Instant::now() < h.until) {
            for (held_topic, wire) in held.messages {
                if held_topic.starts_with(&topic) {
                    subscriber.offer(&mut outbox, &wire);
                }
            }
        }
        outbox.extra.push(topic);
    }

    fn unsubscribe(&self, subscriber: &Subscriber, topic: &[u8]) {
        let mut outbox = subscriber.lock();
        if let Some(i) = outbox.extra.iter().position(|t| t == topic) {
            outbox.extra.swap_remove(i);
        }
    }
}

/// One connection: handshake, then read subscriptions and write the
/// outbox until either side ends.
async fn serve(xpub: Arc<Xpub>, mut connection: Connection) {
    if connection
        .handshake("iopub", "XPUB", &["SUB", "XSUB"])
        .await
        .is_none()
    {
        return;
    }
    let Connection {
        stream,
        peer,
        mut stop,
        ..
    } = connection;
    let subscriber = Arc::new(Subscriber::new("iopub", peer));
    let id = {
        let mut state = lock(&xpub.state);
        let id = state.next_id;
        state.next_id += 1;
        state.subscribers.insert(id, subscriber.clone());
        id
    };
    let (read_half, write_half) = stream.into_split();
    let (pong_tx, pong_rx) = mpsc::channel::<Bytes>(4);
    let ended = tokio::select! {
        r = read_subscriptions(&xpub, &subscriber, read_half, pong_tx) => r,
        r = subscriber.write(write_half, pong_rx) => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    lock(&xpub.state).subscribers.remove(&id);
    subscriber.log_end(&ended);
}

async fn read_subscriptions(
    xpub: &Xpub,
    subscriber: &Arc<Subscriber>,
    mut stream: tokio::net::tcp::OwnedReadHalf,
    pongs: mpsc::Sender<Bytes>,
) -> Result<(), ZmtpError> {
    // Frames after the first of a multipart message are not subscriptions.
    let mut in_message = false;
    loop {
        let incoming = match zmtp::read(&mut stream, MAX_INCOMING_BYTES).await {
            Ok(incoming) => incoming,
            Err(ZmtpError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
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
            let full = {
                let queue = subscriber.lock();
                let topics = &queue.extra;
                let bytes: usize = topics.iter().map(Bytes::len).sum();
                topics.len() >= MAX_TOPICS || bytes + topic.len() > MAX_TOPIC_BYTES
            };
            if full {
                return Err(ZmtpError::Handshake("too many subscriptions"));
            }
            xpub.subscribe(subscriber, topic);
        } else {
            xpub.unsubscribe(subscriber, &topic);
        }
    }
}
