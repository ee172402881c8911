//! How skillkernel's frames travel: the [`Transport`] trait and its
//! implementations.
//!
//! A kernel listens on five channels: three ROUTER channels (shell,
//! control, stdin) that carry requests and replies, IOPub that broadcasts
//! to every subscriber, and a heartbeat that echoes. [`KernelSockets`] hands
//! the kernel one endpoint per channel as plain frame senders and
//! receivers; [`ClientSockets`] is the matching client side used by
//! `skillctl` and the tests.
//!
//! * [`zmq`]: ZeroMQ over TCP. ROUTER, REP and the client sockets come
//!   from the pure-Rust `zeromq` crate; IOPub is an XPUB socket of our own
//!   (ZMTP written here), which bounds each subscriber's queue, drops for
//!   one that stops reading, answers each subscription with a welcome the
//!   kernel builds, and holds what is published before its first
//!   subscriber arrives. The heartbeat echoes on its own OS thread so it
//!   answers while the kernel is busy.
//! * [`inproc`]: tokio channels, for fast tests of the kernel with no
//!   sockets at all.
//!
//! # What this crate must never do
//!
//! Know what a message means. It moves `Vec<Bytes>` multipart frames; it
//! never parses JSON, checks a signature or looks at a `msg_type`.

pub mod inproc;
pub mod zmq;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use skillkernel_protocol::ConnectionInfo;
use thiserror::Error;

/// One multipart message as raw frames.
pub type Frames = Vec<Bytes>;

/// What can go wrong moving frames.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("cannot listen on {endpoint}: {reason}")]
    Bind { endpoint: String, reason: String },
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("the {0} channel is closed")]
    Closed(&'static str),
    #[error("send on {channel} failed: {reason}")]
    Send {
        channel: &'static str,
        reason: String,
    },
    #[error("receive on {channel} failed: {reason}")]
    Recv {
        channel: &'static str,
        reason: String,
    },
}

/// Receives whole multipart messages from one channel.
#[async_trait]
pub trait FrameReceiver: Send {
    /// The next message. Errors for one peer are not fatal: callers log and
    /// call again; only [`TransportError::Closed`] means stop.
    async fn recv(&mut self) -> Result<Frames, TransportError>;
}

/// Sends whole multipart messages on one channel; shared by every task that
/// answers on it.
#[async_trait]
pub trait FrameSender: Send + Sync {
    async fn send(&self, frames: Frames) -> Result<(), TransportError>;

    /// Resolves once everything sent before this call has been handed to
    /// the socket. Used to publish a request's output before its reply.
    async fn flush(&self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Whether everything sent has reached the peers' sockets (a process
    /// about to exit waits for this, briefly).
    fn all_written(&self) -> bool {
        true
    }
}

/// A request/reply channel: ROUTER on the kernel side (frames carry the
/// peer's identity first), DEALER on the client side.
pub struct Channel {
    pub receiver: Box<dyn FrameReceiver>,
    pub sender: Arc<dyn FrameSender>,
}

/// The IOPub channel, kernel side.
pub struct IopubChannel {
    pub sender: Arc<dyn FrameSender>,
    pub control: Arc<dyn IopubControl>,
}

/// Builds the message that answers a new subscription (`iopub_welcome`)
/// from its topic. It goes to that subscriber alone, before anything
/// broadcast after the subscription.
pub type IopubWelcome = Box<dyn Fn(&[u8]) -> Frames + Send + Sync>;

/// What IOPub is delivering and what it lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IopubStats {
    /// Subscribers connected now.
    pub subscribers: usize,
    /// Of those, how many have at least half their queue waiting.
    pub lagging: usize,
    /// Bytes waiting in all subscribers' queues.
    pub queued_bytes: usize,
    /// Messages dropped for subscribers whose queue was full, since start.
    pub dropped: u64,
    /// Messages dropped while held for a first subscriber that was slow to
    /// come.
    pub dropped_before_subscriber: u64,
}

/// The side of IOPub that is not publishing.
pub trait IopubControl: Send + Sync {
    /// Sets what answers each new subscription.
    fn set_welcome(&self, welcome: IopubWelcome);
    fn stats(&self) -> IopubStats;
}

/// Everything a kernel listens on.
pub struct KernelSockets {
    pub shell: Channel,
    pub control: Channel,
    pub stdin: Channel,
    pub iopub: IopubChannel,
    /// Keeps the heartbeat echo alive; dropping it stops the echo.
    pub heartbeat: HeartbeatGuard,
}

/// Everything a client connects to.
pub struct ClientSockets {
    pub shell: Channel,
    pub control: Channel,
    pub stdin: Channel,
    /// Subscribed to every topic.
    pub iopub: Box<dyn FrameReceiver>,
    pub heartbeat: Channel,
}

/// Stops the heartbeat echo when dropped.
pub struct HeartbeatGuard {
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl HeartbeatGuard {
    pub fn new(stop: impl FnOnce() + Send + 'static) -> Self {
        HeartbeatGuard {
            stop: Some(Box::new(stop)),
        }
    }

    /// A guard with nothing to stop.
    pub fn none() -> Self {
        HeartbeatGuard { stop: None }
    }
}

impl Drop for HeartbeatGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// A way to listen on the channels a connection file names.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Binds every channel. Ports that are 0 in `info` are chosen now and
    /// written back into it, so the caller can write the connection file.
    async fn bind(&self, info: &mut ConnectionInfo) -> Result<KernelSockets, TransportError>;
}
