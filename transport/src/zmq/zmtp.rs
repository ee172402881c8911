//! The ZeroMQ wire format (ZMTP 3.0/3.1, NULL mechanism), as much of it as
//! a publisher that owns its sockets needs: the greeting, the READY
//! handshake, frames and commands.
//!
//! Written against the ZMTP specification (rfc.zeromq.org 23 and 37);
//! the peers that matter are libzmq (pyzmq, so every Jupyter front end) and
//! the `zeromq` crate (`skillctl`), and both are exercised by the tests.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Flag bits of a frame's first byte.
const MORE: u8 = 0x01;
const LONG: u8 = 0x02;
const COMMAND: u8 = 0x04;

/// What a peer did wrong on the wire.
#[derive(Debug, Error)]
pub enum ZmtpError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a ZMTP peer (bad greeting signature)")]
    Signature,
    #[error("peer speaks ZMTP {0}.x; 3.0 or later is needed")]
    Version(u8),
    #[error("peer asks for security mechanism {0:?}; only NULL is offered")]
    Mechanism(String),
    #[error("peer's handshake is malformed: {0}")]
    Handshake(&'static str),
    #[error("peer is a {0} socket, which cannot talk to this one")]
    SocketType(String),
    #[error("peer sent a frame of {0} bytes, over the limit")]
    TooLarge(u64),
    #[error("peer closed the connection with an error: {0}")]
    PeerError(String),
}

/// Our greeting: signature, version 3.0, NULL, as-server.
///
/// 3.0 rather than 3.1: a 3.0 peer sends subscriptions as messages, which
/// every ZMTP 3 implementation agrees on; commands from a 3.1 peer are
/// understood anyway.
fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g[32] = 1; // as-server; meaningless for NULL, set as a listener would
    g
}

/// One frame or command off the wire.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message frame; `more` says another frame of the same message
    /// follows.
    Frame { body: Bytes, more: bool },
    /// A command: its name and the rest of its body.
    Command { name: String, data: Bytes },
}

/// Exchanges greetings and READY commands (either side may call it: with
/// NULL, the two sides do the same).
/// `socket_type` is ours; the peer's must be one of `accepts`. Returns the
/// peer's READY properties.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    socket_type: &str,
    accepts: &[&str],
) -> Result<HashMap<String, Bytes>, ZmtpError> {
    stream.write_all(&greeting()).await?;
    let mut peer = [0u8; 64];
    // The signature first: a peer speaking something else (HTTP, a port
    // scanner) is told apart before waiting for bytes it will never send.
    stream.read_exact(&mut peer[..10]).await?;
    if peer[0] != 0xff || peer[9] & 0x01 != 0x01 {
        return Err(ZmtpError::Signature);
    }
    stream.read_exact(&mut peer[10..]).await?;
    if peer[10] < 3 {
        return Err(ZmtpError::Version(peer[10]));
    }
    let mechanism = &peer[12..32];
    let end = mechanism.iter().position(|&b| b == 0).unwrap_or(20);
    if &mechanism[..end] != b"NULL" {
        return Err(ZmtpError::Mechanism(
            String::from_utf8_lossy(&mechanism[..end]).into_owned(),
        ));
    }
    stream
        .write_all(&command(
            "READY",
            &properties(&[("Socket-Type", socket_type)]),
        ))
        .await?;
    let properties = match read(stream, MAX_HANDSHAKE_BYTES).await? {
        Incoming::Command { name, data } if name == "READY" => parse_properties(&data)?,
        Incoming::Command { name, data } if name == "ERROR" => {
            return Err(ZmtpError::PeerError(error_reason(&data)))
        }
        _ => return Err(ZmtpError::Handshake("expected READY")),
    };
    let peer_type = properties
        .get("Socket-Type")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .ok_or(ZmtpError::Handshake("READY without Socket-Type"))?;
    if !accepts.contains(&peer_type.as_str()) {
        let reason = format!("{socket_type} does not accept {peer_type}");
        // Tell the peer why, as libzmq does, before closing.
        let _ = stream
            .write_all(&command("ERROR", &error_body(&reason)))
            .await;
        return Err(ZmtpError::SocketType(peer_type));
    }
    Ok(properties)
}

/// The most a READY command may carry.
const MAX_HANDSHAKE_BYTES: u64 = 64 * 1024;

/// Reads one frame or command, refusing bodies over `limit` bytes.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S, limit: u64) -> Result<Incoming, ZmtpError> {
    let flags = stream.read_u8().await?;
    let size = if flags & LONG != 0 {
        stream.read_u64().await?
    } else {
        u64::from(stream.read_u8().await?)
    };
    if size > limit {
        return Err(ZmtpError::TooLarge(size));
    }
    // Grown as bytes arrive, not sized from the header: a peer claiming a
    // large frame costs only what it actually sends.
    let mut body = Vec::with_capacity(size.min(64 * 1024) as usize);
    (&mut *stream).take(size).read_to_end(&mut body).await?;
    if (body.len() as u64) < size {
        return Err(ZmtpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let body = Bytes::from(body);
    if flags & COMMAND == 0 {
        return Ok(Incoming::Frame {
            body,
            more: flags & MORE != 0,
        });
    }
    let name_len = usize::from(*body.first().ok_or(ZmtpError::Handshake("empty command"))?);
    if body.len() < 1 + name_len {
        return Err(ZmtpError::Handshake("command name runs past its body"));
    }
    Ok(Incoming::Command {
        name: String::from_utf8_lossy(&body[1..1 + name_len]).into_owned(),
        data: body.slice(1 + name_len..),
    })
}

fn put_head(out: &mut BytesMut, flags: u8, len: usize) {
    if len > 255 {
        out.put_u8(flags | LONG);
        out.put_u64(len as u64);
    } else {
        out.put_u8(flags);
        out.put_u8(len as u8);
    }
}

/// A whole multipart message in wire form, ready to be written as is.
pub fn encode_message(frames: &[Bytes]) -> Bytes {
    let size: usize = frames.iter().map(|f| f.len() + 9).sum();
    let mut out = BytesMut::with_capacity(size);
    for (i, frame) in frames.iter().enumerate() {
        let more = if i + 1 < frames.len() { MORE } else { 0 };
        put_head(&mut out, more, frame.len());
        out.put_slice(frame);
    }
    out.freeze()
}

/// A command in wire form.
pub fn command(name: &str, data: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(1 + name.len() + data.len());
    body.put_u8(name.len() as u8);
    body.put_slice(name.as_bytes());
    body.put_slice(data);
    let mut out = BytesMut::with_capacity(body.len() + 9);
    put_head(&mut out, COMMAND, body.len());
    out.put_slice(&body);
    out.freeze()
}

/// The PONG that answers a PING's `data` (ZMTP 3.1 heartbeats): its
/// context, after the 2-byte TTL, echoed back.
pub fn pong(ping: &[u8]) -> Bytes {
    command("PONG", ping.get(2..).unwrap_or_default())
}

fn properties(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn parse_properties(mut data: &[u8]) -> Result<HashMap<String, Bytes>, ZmtpError> {
    let bad = ZmtpError::Handshake("READY properties are malformed");
    let mut out = HashMap::new();
    while let Some((&name_len, rest)) = data.split_first() {
        let name_len = usize::from(name_len);
        if rest.len() < name_len + 4 {
            return Err(bad);
        }
        let name = String::from_utf8_lossy(&rest[..name_len]).into_owned();
        let mut len = [0u8; 4];
        len.copy_from_slice(&rest[name_len..name_len + 4]);
        let value_len = u32::from_be_bytes(len) as usize;
        let rest = &rest[name_len + 4..];
        if rest.len() < value_len {
            return Err(bad);
        }
        out.insert(name, Bytes::copy_from_slice(&rest[..value_len]));
        data = &rest[value_len..];
    }
    Ok(out)
}

fn error_body(reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(255)];
    let mut out = vec![reason.len() as u8];
    out.extend_from_slice(reason);
    out
}

fn error_reason(data: &[u8]) -> String {
    let len = data.first().map_or(0, |&n| usize::from(n));
    String::from_utf8_lossy(data.get(1..1 + len).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_round_trips_through_its_wire_form() {
        let big = Bytes::from(vec![7u8; 300]);
        let wire = encode_message(&[Bytes::from_static(b"topic"), big.clone()]);
        let mut reader = &wire[..];
        assert_eq!(
            read(&mut reader, 1024).await.unwrap(),
            Incoming::Frame {
                body: Bytes::from_static(b"topic"),
                more: true
            }
        );
        assert_eq!(
            read(&mut reader, 1024).await.unwrap(),
            Incoming::Frame {
                body: big,
                more: false
            }
        );
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_before_it_is_read() {
        let wire = encode_message(&[Bytes::from(vec![0u8; 2048])]);
        assert!(matches!(
            read(&mut &wire[..], 1024).await,
            Err(ZmtpError::TooLarge(2048))
        ));
    }

    #[test]
    fn properties_parse_back_and_truncated_ones_are_refused() {
        let data = properties(&[("Socket-Type", "SUB"), ("Identity", "")]);
        let parsed = parse_properties(&data).unwrap();
        assert_eq!(parsed["Socket-Type"], Bytes::from_static(b"SUB"));
        assert_eq!(parsed["Identity"], Bytes::new());
        assert!(parse_properties(&data[..data.len() - 1]).is_err());
    }
}
