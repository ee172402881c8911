//! ZeroMQ over TCP, on the pure-Rust `zeromq` crate.
//!
//! Kernel side: sockets of our own (the wire format in [`zmtp`], what
//! they share in [`peer`]) for ROUTER ([`router`]: shell, control, stdin)
//! and XPUB ([`xpub`]: IOPub), because the crate's ROUTER, PUB and XPUB
//! cannot bound what a peer that stops reading costs; REP from the crate
//! for the heartbeat, on a dedicated OS thread with its own small runtime,
//! so a kernel busy with long work still answers pings. The client side
//! ([`connect`]) is the crate's DEALER, SUB and REQ.
//!
//! IOPub (in [`iopub`]) never waits on a subscriber, welcomes each
//! subscription, and holds what it publishes before its first subscriber
//! arrives.

mod iopub;
mod peer;
mod router;
mod xpub;
mod zmtp;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use skillkernel_protocol::connection::ChannelPort;
use skillkernel_protocol::ConnectionInfo;
use tokio::sync::{mpsc, oneshot};
use zeromq::prelude::*;
use zeromq::{
    util::PeerIdentity, DealerSocket, Endpoint, RepSocket, ReqSocket, SocketOptions, SubSocket,
    ZmqMessage,
};

use crate::{
    Channel, ClientSockets, FrameReceiver, FrameSender, Frames, HeartbeatGuard, KernelSockets,
    Transport, TransportError,
};

use iopub::bind_iopub;
pub use iopub::{HELD_MESSAGES, STARTUP_HOLD, SUBSCRIBER_BYTES, SUBSCRIBER_MESSAGES};
use router::bind_router;

/// The ZeroMQ transport.
#[derive(Debug, Default, Clone, Copy)]
pub struct ZmqTransport;

fn to_zmq(frames: Frames) -> Result<ZmqMessage, String> {
    ZmqMessage::try_from(frames).map_err(|e| e.to_string())
}

fn port_of(endpoint: &Endpoint) -> u16 {
    match endpoint {
        Endpoint::Tcp(_, port) => *port,
        _ => 0,
    }
}

#[async_trait]
impl Transport for ZmqTransport {
    async fn bind(&self, info: &mut ConnectionInfo) -> Result<KernelSockets, TransportError> {
        let shell = bind_router(info, ChannelPort::Shell, "shell").await?;
        let control = bind_router(info, ChannelPort::Control, "control").await?;
        let stdin = bind_router(info, ChannelPort::Stdin, "stdin").await?;
        let iopub = bind_iopub(info).await?;
        let heartbeat = spawn_heartbeat(info)?;
        Ok(KernelSockets {
            shell,
            control,
            stdin,
            iopub,
            heartbeat,
        })
    }
}

// ------------------------------------------------------------- heartbeat

fn spawn_heartbeat(info: &mut ConnectionInfo) -> Result<HeartbeatGuard, TransportError> {
    let endpoint = info.endpoint(ChannelPort::Heartbeat);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<u16, TransportError>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread_endpoint = endpoint.clone();
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || heartbeat_thread(thread_endpoint, ready_tx, stop_rx))
        .map_err(|e| TransportError::Bind {
            endpoint: endpoint.clone(),
            reason: format!("cannot start heartbeat thread: {e}"),
        })?;
    let port = ready_rx.recv().map_err(|_| TransportError::Bind {
        endpoint,
        reason: "heartbeat thread exited before binding".into(),
    })??;
    info.hb_port = port;
    Ok(HeartbeatGuard::new(move || {
        let _ = stop_tx.send(());
    }))
}

fn heartbeat_thread(
    endpoint: String,
    ready: std::sync::mpsc::Sender<Result<u16, TransportError>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(TransportError::Bind {
                endpoint,
                reason: format!("cannot build heartbeat runtime: {e}"),
            }));
            return;
        }
    };
    runtime.block_on(async move {
        let mut socket = RepSocket::new();
        match socket.bind(&endpoint).await {
            Ok(bound) => {
                let _ = ready.send(Ok(port_of(&bound)));
            }
            Err(e) => {
                let _ = ready.send(Err(TransportError::Bind {
                    endpoint,
                    reason: e.to_string(),
                }));
                return;
            }
        }
        let echo = async {
            loop {
                match socket.recv().await {
                    Ok(ping) => {
                        if let Err(e) = socket.send(ping).await {
                            tracing::debug!(error = %e, "heartbeat reply failed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "heartbeat receive failed"),
                }
            }
        };
        tokio::select! {
            _ = echo => {}
            _ = stop => {}
        }
    });
}

// ---------------------------------------------------------------- client

struct DealerRx {
    name: &'static str,
    half: zeromq::DealerRecvHalf,
}

#[async_trait]
impl FrameReceiver for DealerRx {
    async fn recv(&mut self) -> Result<Frames, TransportError> {
        self.half
            .recv()
            .await
            .map(ZmqMessage::into_vec)
            .map_err(|e| TransportError::Recv {
                channel: self.name,
                reason: e.to_string(),
            })
    }
}

struct DealerTx {
    name: &'static str,
    half: tokio::sync::Mutex<zeromq::DealerSendHalf>,
}

#[async_trait]
impl FrameSender for DealerTx {
    async fn send(&self, frames: Frames) -> Result<(), TransportError> {
        let err = |reason| TransportError::Send {
            channel: self.name,
            reason,
        };
        let msg = to_zmq(frames).map_err(err)?;
        self.half
            .lock()
            .await
            .send(msg)
            .await
            .map_err(|e| err(e.to_string()))
    }
}

async fn connect_dealer(
    info: &ConnectionInfo,
    port: ChannelPort,
    name: &'static str,
    identity: &Bytes,
) -> Result<Channel, TransportError> {
    let endpoint = info.endpoint(port);
    let mut options = SocketOptions::default();
    let peer = PeerIdentity::try_from(identity.clone()).map_err(|e| TransportError::Connect {
        endpoint: endpoint.clone(),
        reason: e.to_string(),
    })?;
    options.peer_identity(peer);
    let mut socket = DealerSocket::with_options(options);
    socket
        .connect(&endpoint)
        .await
        .map_err(|e| TransportError::Connect {
            endpoint,
            reason: e.to_string(),
        })?;
    let (tx, rx) = socket.split();
    Ok(Channel {
        receiver: Box::new(DealerRx { name, half: rx }),
        sender: Arc::new(DealerTx {
            name,
            half: tokio::sync::Mutex::new(tx),
        }),
    })
}

struct SubRx(SubSocket);

#[async_trait]
impl FrameReceiver for SubRx {
    async fn recv(&mut self) -> Result<Frames, TransportError> {
        self.0
            .recv()
            .await
            .map(ZmqMessage::into_vec)
            .map_err(|e| TransportError::Recv {
                channel: "iopub",
                reason: e.to_string(),
            })
    }
}

/// REQ heartbeat client: send a ping, then receive the echo.
struct ReqChannel {
    socket: tokio::sync::Mutex<ReqSocket>,
    reply_tx: mpsc::UnboundedSender<Frames>,
}

#[async_trait]
impl FrameSender for ReqChannel {
    async fn send(&self, frames: Frames) -> Result<(), TransportError> {
        let err = |reason| TransportError::Send {
            channel: "heartbeat",
            reason,
        };
        let mut socket = self.socket.lock().await;
        socket
            .send(to_zmq(frames).map_err(err)?)
            .await
            .map_err(|e| err(e.to_string()))?;
        let echo = socket.recv().await.map_err(|e| err(e.to_string()))?;
        let _ = self.reply_tx.send(echo.into_vec());
        Ok(())
    }
}

struct ReqRx(mpsc::UnboundedReceiver<Frames>);

#[async_trait]
impl FrameReceiver for ReqRx {
    async fn recv(&mut self) -> Result<Frames, TransportError> {
        self.0
            .recv()
            .await
            .ok_or(TransportError::Closed("heartbeat"))
    }
}

/// Connects a client to a kernel: DEALER shell/control/stdin sharing one
/// `identity` (so `input_request`s reach the asker), SUB IOPub subscribed
/// to everything, REQ heartbeat.
pub async fn connect(
    info: &ConnectionInfo,
    identity: &[u8],
) -> Result<ClientSockets, TransportError> {
    let identity = Bytes::copy_from_slice(identity);
    let shell = connect_dealer(info, ChannelPort::Shell, "shell", &identity).await?;
    let control = connect_dealer(info, ChannelPort::Control, "control", &identity).await?;
    let stdin = connect_dealer(info, ChannelPort::Stdin, "stdin", &identity).await?;
    let iopub_endpoint = info.endpoint(ChannelPort::IoPub);
    let mut sub = SubSocket::new();
    let connect_err = |endpoint: &str, e: zeromq::ZmqError| TransportError::Connect {
        endpoint: endpoint.to_owned(),
        reason: e.to_string(),
    };
    sub.connect(&iopub_endpoint)
        .await
        .map_err(|e| connect_err(&iopub_endpoint, e))?;
    sub.subscribe("")
        .await
        .map_err(|e| connect_err(&iopub_endpoint, e))?;
    let hb_endpoint = info.endpoint(ChannelPort::Heartbeat);
    let mut req = ReqSocket::new();
    req.connect(&hb_endpoint)
        .await
        .map_err(|e| connect_err(&hb_endpoint, e))?;
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let req = ReqChannel {
        socket: tokio::sync::Mutex::new(req),
        reply_tx,
    };
    Ok(ClientSockets {
        shell,
        control,
        stdin,
        iopub: Box::new(SubRx(sub)),
        heartbeat: Channel {
            receiver: Box::new(ReqRx(reply_rx)),
            sender: Arc::new(req),
        },
    })
}
