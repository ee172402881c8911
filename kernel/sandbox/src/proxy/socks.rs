//! The proxy's SOCKS5 side (RFC 1928): no authentication, `CONNECT` only,
//! addresses as names (`socks5h`) or IPs; a host off the allow-list gets
//! reply `0x02`, "connection not allowed by ruleset".

use std::net::{Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{in_time, splice, Refusal, Run};

pub(super) const VERSION: u8 = 5;

const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const SUCCEEDED: u8 = 0;
const NOT_ALLOWED: u8 = 2;
const HOST_UNREACHABLE: u8 = 4;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ADDRESS_NOT_SUPPORTED: u8 = 8;

/// Serves a client whose version byte was read.
pub(super) async fn serve(mut client: UnixStream, run: &Run) {
    let Some((host, port, command)) = in_time(handshake(&mut client)).await.flatten() else {
        return;
    };
    if command != CMD_CONNECT {
        return reply(&mut client, COMMAND_NOT_SUPPORTED).await;
    }
    if !run.check("socks5", &host, port) {
        return reply(&mut client, NOT_ALLOWED).await;
    }
    let upstream = match run.connect("socks5", &host, port).await {
        Ok(upstream) => upstream,
        Err(Refusal::Denied) => return reply(&mut client, NOT_ALLOWED).await,
        Err(Refusal::Failed) => return reply(&mut client, HOST_UNREACHABLE).await,
    };
    reply(&mut client, SUCCEEDED).await;
    splice(client, upstream).await;
}

/// The greeting and the request: host, port and command; `None` when the
/// client went away or was answered already.
async fn handshake(client: &mut UnixStream) -> Option<(String, u16, u8)> {
    let methods = read_greeting(client).await.ok()?;
    if !methods.contains(&NO_AUTH) {
        let _ = client.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await;
        return None;
    }
    client.write_all(&[VERSION, NO_AUTH]).await.ok()?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await.ok()?;
    if request[0] != VERSION {
        return None;
    }
    let host = match read_address(client, request[3]).await.ok()? {
        Some(host) => host,
        None => {
            reply(client, ADDRESS_NOT_SUPPORTED).await;
            return None;
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await.ok()?;
    Some((host, u16::from_be_bytes(port), request[1]))
}

async fn read_greeting(client: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let count = client.read_u8().await?;
    let mut methods = vec![0u8; count as usize];
    client.read_exact(&mut methods).await?;
    Ok(methods)
}

/// The address of type `kind`: `None` for a type SOCKS5 does not define.
async fn read_address(client: &mut UnixStream, kind: u8) -> std::io::Result<Option<String>> {
    Ok(Some(match kind {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let len = client.read_u8().await?;
            let mut name = vec![0u8; len as usize];
            client.read_exact(&mut name).await?;
            match String::from_utf8(name) {
                Ok(name) => name,
                Err(_) => return Ok(None),
            }
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            format!("[{}]", Ipv6Addr::from(ip))
        }
        _ => return Ok(None),
    }))
}

/// A reply with an empty bound address (`0.0.0.0:0`).
async fn reply(client: &mut UnixStream, code: u8) {
    let _ = client
        .write_all(&[VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0])
        .await;
}
