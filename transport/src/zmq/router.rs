//! ROUTER sockets of our own, for shell, control and stdin.
//!
//! The `zeromq` crate's ROUTER queues replies for a peer without a bound:
//! a client that sends requests and never reads the replies grows the
//! daemon by every reply. Here each peer has an outbox bounded in messages
//! and bytes ([`super::peer`]); a reply to a peer whose outbox is full is
//! dropped, as libzmq's ROUTER drops at the high-water mark, and logged
//! once. Requests come in through one small bounded queue: while the
//! kernel is behind, a connection's reader waits, and TCP pushes back on a
//! client that floods.
//!
//! Every received message starts with the sending peer's identity (its
//! READY `Identity`, or one made up here); a message sent starts with the
//! identity of the peer it goes to. A peer that reconnects with an
//! identity in use takes it over (libzmq's `ROUTER_HANDOVER`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use skillkernel_protocol::connection::ChannelPort;
use skillkernel_protocol::ConnectionInfo;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::peer::{self, lock, Connection, Outbox};
use super::zmtp::{self, Incoming, ZmtpError};
use crate::{Channel, FrameReceiver, FrameSender, Frames, TransportError};

/// The largest message a peer may send (frames counted with their
/// overhead); the kernel applies its own, smaller, configurable limit
/// after this one.
pub const MAX_MESSAGE_BYTES: u64 = 256 << 20;
/// Frames one message may have: identities, delimiter, five parts and
/// buffers, with room to spare; empty frames must not be free.
const MAX_FRAMES: usize = 4096;
/// What a frame costs in memory beyond its body.
const FRAME_OVERHEAD: u64 = 64;
/// Requests received and not yet taken by the kernel...
const INBOUND_QUEUE: usize = 64;
/// ...and their bytes, all peers together (a larger message waits for an
/// empty queue). A peer whose request does not fit is not read from until
/// it does: its own TCP buffers fill, not the daemon's memory.
pub const INBOUND_BYTES: usize = 64 << 20;

/// A request with its share of [`INBOUND_BYTES`], given back when the
/// kernel takes it.
type Request = (Frames, OwnedSemaphorePermit);
/// How long the socket outlives the kernel's handles, so replies queued
/// last (a `shutdown_reply`) reach the wire.
const LINGER: Duration = Duration::from_millis(200);

type Peer = Outbox<()>;

struct Router {
    name: &'static str,
    peers: Mutex<HashMap<Bytes, Arc<Peer>>>,
    next_identity: AtomicU32,
}

/// Binds the ROUTER socket of `channel` and starts accepting.
pub(super) async fn bind_router(
    info: &mut ConnectionInfo,
    channel: ChannelPort,
    name: &'static str,
) -> Result<Channel, TransportError> {
    let (listener, port) = peer::listen(&info.ip, info.port(channel))
        .await
        .map_err(|e| TransportError::Bind {
            endpoint: info.endpoint(channel),
            reason: e.to_string(),
        })?;
    info.set_port(channel, port);
    let router = Arc::new(Router {
        name,
        peers: Mutex::new(HashMap::new()),
        next_identity: AtomicU32::new(1),
    });
    let (inbound, requests) = mpsc::channel(INBOUND_QUEUE);
    let budget = Arc::new(Semaphore::new(INBOUND_BYTES));
    // The socket closes when the kernel has dropped both of its handles.
    let (open, closed) = watch::channel(false);
    let open = Arc::new(open);
    let socket = router.clone();
    tokio::spawn(peer::accept(
        name,
        listener,
        closed,
        LINGER,
        move |connection| serve(socket.clone(), connection, inbound.clone(), budget.clone()),
    ));
    Ok(Channel {
        receiver: Box::new(RouterRx {
            name,
            requests,
            _open: open.clone(),
        }),
        sender: Arc::new(RouterTx {
            router,
            _open: open,
        }),
    })
}

struct RouterRx {
    name: &'static str,
    requests: mpsc::Receiver<Request>,
    _open: Arc<watch::Sender<bool>>,
}

#[async_trait]
impl FrameReceiver for RouterRx {
    async fn recv(&mut self) -> Result<Frames, TransportError> {
        match self.requests.recv().await {
            Some((frames, _share)) => Ok(frames),
            None => Err(TransportError::Closed(self.name)),
        }
    }
}

struct RouterTx {
    router: Arc<Router>,
    _open: Arc<watch::Sender<bool>>,
}

#[async_trait]
impl FrameSender for RouterTx {
    async fn send(&self, frames: Frames) -> Result<(), TransportError> {
        let Some((identity, message)) = frames.split_first() else {
            return Ok(());
        };
        let peer = lock(&self.router.peers).get(identity).cloned();
        match peer {
            Some(peer) => {
                let wire = zmtp::encode_message(message);
                let mut queue = peer.lock();
                peer.offer(&mut queue, &wire);
            }
            // As a ROUTER does: a message for a peer that is gone is dropped.
            None => tracing::debug!(channel = self.router.name, "reply for a peer that is gone"),
        }
        Ok(())
    }

    fn all_written(&self) -> bool {
        lock(&self.router.peers)
            .values()
            .all(|peer| peer.lock().is_written())
    }
}

impl Router {
    /// The identity a peer gave in its READY, or a new one, as libzmq
    /// makes them: a zero byte, then a counter. A given identity starting
    /// with a zero byte gets a made-up one instead (libzmq forbids setting
    /// such an identity: that space is the socket's own), so no peer can
    /// claim another peer's made-up identity and take its replies.
    fn identity(&self, properties: &HashMap<String, Bytes>) -> Bytes {
        match properties.get("Identity") {
            Some(identity) if !identity.is_empty() && identity[0] != 0 => identity.clone(),
            _ => {
                let n = self.next_identity.fetch_add(1, Ordering::Relaxed);
                let mut made = vec![0u8];
                made.extend_from_slice(&n.to_be_bytes());
                Bytes::from(made)
            }
        }
    }
}

async fn serve(
    router: Arc<Router>,
    mut connection: Connection,
    inbound: mpsc::Sender<Request>,
    budget: Arc<Semaphore>,
) {
    let name = router.name;
    let Some(properties) = connection
        .handshake(name, "ROUTER", &["DEALER", "REQ", "ROUTER"])
        .await
    else {
        return;
    };
    let Connection {
        stream,
        peer: addr,
        mut stop,
        ..
    } = connection;
    let identity = router.identity(&properties);
    let peer = Arc::new(Peer::new(name, addr));
    if lock(&router.peers)
        .insert(identity.clone(), peer.clone())
        .is_some()
    {
        tracing::debug!(channel = name, peer = %addr, "identity taken over by a new connection");
    }
    let (read_half, write_half) = stream.into_split();
    let (pong_tx, pong_rx) = mpsc::channel::<Bytes>(4);
    let ended = tokio::select! {
        r = read_messages(&identity, read_half, &inbound, &budget, pong_tx) => r,
        r = peer.write(write_half, pong_rx) => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    {
        let mut peers = lock(&router.peers);
        // Only if no newer connection took the identity over.
        if peers.get(&identity).is_some_and(|p| Arc::ptr_eq(p, &peer)) {
            peers.remove(&identity);
        }
    }
    peer.log_end(&ended);
}

/// Reads whole messages, each handed on with `identity` in front.
async fn read_messages(
    identity: &Bytes,
    mut stream: OwnedReadHalf,
    inbound: &mpsc::Sender<Request>,
    budget: &Arc<Semaphore>,
    pongs: mpsc::Sender<Bytes>,
) -> Result<(), ZmtpError> {
    let mut frames = vec![identity.clone()];
    let mut size = 0u64;
    loop {
        let incoming = match zmtp::read(&mut stream, MAX_MESSAGE_BYTES.saturating_sub(size)).await {
            Ok(incoming) => incoming,
            Err(ZmtpError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        match incoming {
            Incoming::Frame { body, more } => {
                size += body.len() as u64 + FRAME_OVERHEAD;
                if frames.len() >= MAX_FRAMES || size > MAX_MESSAGE_BYTES {
                    return Err(ZmtpError::TooLarge(size));
                }
                frames.push(body);
                if !more {
                    let message = std::mem::replace(&mut frames, vec![identity.clone()]);
                    let cost = u32::try_from(size.min(INBOUND_BYTES as u64)).unwrap_or(u32::MAX);
                    size = 0;
                    let Ok(share) = budget.clone().acquire_many_owned(cost).await else {
                        return Ok(());
                    };
                    if inbound.send((message, share)).await.is_err() {
                        // The kernel stopped reading this channel.
                        return Ok(());
                    }
                }
            }
            Incoming::Command { name, data } => match name.as_str() {
                "PING" => {
                    let _ = pongs.try_send(zmtp::pong(&data));
                }
                "ERROR" => {
                    return Err(ZmtpError::PeerError(
                        String::from_utf8_lossy(&data).into_owned(),
                    ))
                }
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use skillkernel_protocol::ConnectionInfo;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    use super::super::peer::{MAX_HANDSHAKING, PEER_MESSAGES};
    use super::super::{connect, zmtp, ZmqTransport};
    use super::INBOUND_BYTES;
    use crate::{KernelSockets, Transport};

    async fn bound() -> (KernelSockets, ConnectionInfo) {
        let mut info = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
        let sockets = ZmqTransport.bind(&mut info).await.expect("bind");
        (sockets, info)
    }

    async fn reply_to(kernel: &KernelSockets, identity: &[u8], text: &str) {
        let frames = vec![
            Bytes::copy_from_slice(identity),
            Bytes::copy_from_slice(text.as_bytes()),
        ];
        kernel.shell.sender.send(frames).await.unwrap();
    }

    fn msg(text: &str) -> Vec<Bytes> {
        vec![Bytes::copy_from_slice(text.as_bytes())]
    }

    #[tokio::test]
    async fn replies_reach_the_peer_that_asked_and_no_other() {
        let (mut kernel, info) = bound().await;
        let a = connect(&info, b"alice").await.expect("connect");
        let mut b = connect(&info, b"bob").await.expect("connect");
        b.shell.sender.send(msg("from bob")).await.unwrap();
        let got = kernel.shell.receiver.recv().await.unwrap();
        assert_eq!(
            got,
            [Bytes::from_static(b"bob"), Bytes::from_static(b"from bob")]
        );
        reply_to(&kernel, b"bob", "to bob").await;
        let reply = timeout(Duration::from_secs(5), b.shell.receiver.recv()).await;
        assert_eq!(reply.unwrap().unwrap(), [Bytes::from_static(b"to bob")]);
        // Alice got nothing; a reply to a peer that never was is dropped.
        reply_to(&kernel, b"nobody", "x").await;
        let mut a = a;
        assert!(timeout(Duration::from_millis(200), a.shell.receiver.recv())
            .await
            .is_err());
    }

    /// A peer may not claim an identity in the socket's own space (a zero
    /// byte first) and so take another peer's replies; a normal one it
    /// keeps (the positive control).
    #[tokio::test]
    async fn a_peer_cannot_claim_a_made_up_identity() {
        let (mut kernel, info) = bound().await;
        let claimer = connect(&info, b"\0\0\0\0\0\0\0\0\x01")
            .await
            .expect("connect");
        claimer.shell.sender.send(msg("mine")).await.unwrap();
        let got = kernel.shell.receiver.recv().await.unwrap();
        assert_ne!(
            &got[0][..],
            b"\0\0\0\0\0\0\0\0\x01",
            "given a fresh identity"
        );
        assert_eq!(got[0][0], 0);
        let named = connect(&info, b"carol").await.expect("connect");
        named.shell.sender.send(msg("hi")).await.unwrap();
        let got = kernel.shell.receiver.recv().await.unwrap();
        assert_eq!(&got[0][..], b"carol");
    }

    /// A DEALER on the shell port that has done its handshake and nothing
    /// else, with no identity.
    async fn raw_dealer(info: &ConnectionInfo) -> TcpStream {
        let mut stream = TcpStream::connect((info.ip.as_str(), info.shell_port))
            .await
            .unwrap();
        zmtp::handshake(&mut stream, "DEALER", &["ROUTER"])
            .await
            .unwrap();
        stream
    }

    #[tokio::test]
    async fn a_peer_that_never_reads_does_not_hold_up_replies_to_others() {
        let (mut kernel, info) = bound().await;
        let mut stream = raw_dealer(&info).await;
        // No Identity in its READY: the socket makes one up; learn it from
        // the first request.
        stream
            .write_all(&zmtp::encode_message(&msg("hello")))
            .await
            .unwrap();
        let identity = kernel.shell.receiver.recv().await.unwrap()[0].clone();
        assert_eq!(identity[0], 0, "a made-up identity starts with a zero byte");
        let big = Bytes::from(vec![b'r'; 32 * 1024]);
        for _ in 0..3 * PEER_MESSAGES {
            kernel
                .shell
                .sender
                .send(vec![identity.clone(), big.clone()])
                .await
                .unwrap();
        }
        // Positive control: a reading peer on the same socket is answered.
        let mut reader = connect(&info, b"reader").await.expect("connect");
        reader.shell.sender.send(msg("ping")).await.unwrap();
        let asked = kernel.shell.receiver.recv().await.unwrap();
        assert_eq!(asked[0], Bytes::from_static(b"reader"));
        reply_to(&kernel, &asked[0], "pong").await;
        let reply = timeout(Duration::from_secs(5), reader.shell.receiver.recv()).await;
        assert_eq!(reply.unwrap().unwrap(), [Bytes::from_static(b"pong")]);
        drop(stream);
    }

    /// Reads from `stream` (the socket's greeting) until it is closed;
    /// `false` if it is still open after `wait`.
    async fn closed_within(mut stream: TcpStream, wait: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        timeout(wait, async {
            while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await
        .is_ok()
    }

    /// Connections that never handshake cannot hold the socket: beyond
    /// MAX_HANDSHAKING the oldest are closed, and a real client that
    /// comes after them is served at once.
    #[tokio::test]
    async fn connections_that_never_handshake_make_room_for_ones_that_do() {
        let (mut kernel, info) = bound().await;
        let mut silent = Vec::new();
        for _ in 0..MAX_HANDSHAKING + 100 {
            let stream = TcpStream::connect((info.ip.as_str(), info.shell_port))
                .await
                .unwrap();
            silent.push(stream);
        }
        let client = connect(&info, b"late").await.expect("connect");
        client.shell.sender.send(msg("served")).await.unwrap();
        let got = timeout(Duration::from_secs(5), kernel.shell.receiver.recv()).await;
        assert_eq!(
            got.unwrap().unwrap(),
            [Bytes::from_static(b"late"), Bytes::from_static(b"served")]
        );
        // The oldest silent ones were closed well before the handshake
        // timeout; the newest still wait for theirs.
        let newest = silent.split_off(silent.len() - 10);
        for stream in silent.into_iter().take(100) {
            assert!(closed_within(stream, Duration::from_secs(2)).await);
        }
        for stream in newest {
            assert!(!closed_within(stream, Duration::from_millis(100)).await);
        }
    }

    /// A socket that stops closes its connections still handshaking too,
    /// without waiting out their handshake time.
    #[tokio::test]
    async fn a_stopping_socket_closes_connections_still_handshaking() {
        let (kernel, info) = bound().await;
        let silent = TcpStream::connect((info.ip.as_str(), info.shell_port))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(kernel);
        assert!(closed_within(silent, Duration::from_secs(3)).await);
    }

    /// A kernel that stops taking requests holds back the sender, not the
    /// daemon's memory: beyond INBOUND_BYTES queued the peer is not read
    /// from. Once the kernel reads again, every request arrives, in order.
    #[tokio::test]
    async fn queued_requests_are_bounded_in_bytes_and_the_sender_waits() {
        const SIZE: usize = 8 << 20;
        // Far more beyond the bound than loopback TCP buffers hold, even
        // autotuned: 128 MiB past the 64 MiB and the message in hand.
        let count = INBOUND_BYTES / SIZE + 17;
        let (mut kernel, info) = bound().await;
        let mut stream = raw_dealer(&info).await;
        let writer = tokio::spawn(async move {
            for i in 0..count {
                let mut body = vec![b'x'; SIZE];
                body[0] = i as u8;
                let wire = zmtp::encode_message(&[Bytes::from(body)]);
                stream.write_all(&wire).await.unwrap();
            }
            stream
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !writer.is_finished(),
            "{} MiB went out while the kernel read nothing",
            (count * SIZE) >> 20
        );
        for i in 0..count {
            let got = timeout(Duration::from_secs(10), kernel.shell.receiver.recv())
                .await
                .expect("queued requests arrive")
                .unwrap();
            assert_eq!((got[1].len(), got[1][0]), (SIZE, i as u8));
        }
        let _stream = timeout(Duration::from_secs(10), writer)
            .await
            .expect("the sender finishes once the kernel reads")
            .unwrap();
    }
}
