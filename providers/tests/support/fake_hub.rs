//! A local stand-in for a Hugging Face-style model hub, speaking just
//! enough HTTP/1.1: `HEAD`/`GET {org}/{repo}/resolve/{rev}/{file}` answer
//! with a redirect carrying `X-Linked-Etag` (sha256) and `X-Linked-Size`,
//! as the real hub does for LFS files, and `/cdn/{sha}` serves the bytes,
//! honouring `Range`. Knobs make it lie about the checksum or drop the
//! connection part way, so the error paths of `pull` can be tested.
//!
//! Shared by the providers tests and the daemon tests (included by path).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    /// `org/repo/file` → bytes (revision `main`).
    files: HashMap<String, Vec<u8>>,
    wrong_checksum: bool,
    break_after: Option<usize>,
    /// Each request as `METHOD PATH [range]`.
    requests: Vec<String>,
}

/// A running fake hub.
pub struct FakeHub {
    pub url: String,
    state: Arc<Mutex<State>>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex_string(&Sha256::digest(bytes))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FakeHub {
    /// Serves `files` (`org/repo/file.gguf` → bytes) on a free local port.
    pub async fn start(files: Vec<(String, Vec<u8>)>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            files: files.into_iter().collect(),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(socket, state).await;
                });
            }
        });
        FakeHub { url, state }
    }

    /// Advertise a checksum that does not match the bytes.
    pub fn lie_about_checksum(&self) {
        self.state.lock().unwrap().wrong_checksum = true;
    }

    /// Drop the connection after `bytes` of the next download.
    pub fn break_next_download_after(&self, bytes: usize) {
        self.state.lock().unwrap().break_after = Some(bytes);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let range: Option<u64> = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("range"))
        .and_then(|(_, v)| {
            v.trim()
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse()
                .ok()
        });
    state.lock().unwrap().requests.push(match range {
        Some(r) => format!("{method} {path} range={r}"),
        None => format!("{method} {path}"),
    });

    if let Some(sha) = path.strip_prefix("/cdn/") {
        let (bytes, cut) = {
            let mut s = state.lock().unwrap();
            let bytes = s.files.values().find(|b| sha256_hex(b) == sha).cloned();
            (bytes, s.break_after.take())
        };
        let Some(bytes) = bytes else {
            return respond(&mut socket, "404 Not Found", &[], b"not found").await;
        };
        let start = range.unwrap_or(0).min(bytes.len() as u64) as usize;
        let body = &bytes[start..];
        let mut headers =
            format!(
            "HTTP/1.1 {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
            if range.is_some() { "206 Partial Content" } else { "200 OK" },
            body.len()
        );
        if range.is_some() {
            headers.push_str(&format!(
                "Content-Range: bytes {start}-{}/{}\r\n",
                bytes.len() - 1,
                bytes.len()
            ));
        }
        headers.push_str("\r\n");
        socket.write_all(headers.as_bytes()).await?;
        if method == "GET" {
            let send = cut.map_or(body.len(), |c| c.min(body.len()));
            for chunk in body[..send].chunks(64 * 1024) {
                socket.write_all(chunk).await?;
            }
        }
        return socket.shutdown().await;
    }

    let file = path
        .trim_start_matches('/')
        .split_once("/resolve/main/")
        .map(|(repo, file)| format!("{repo}/{file}"));
    let found = {
        let s = state.lock().unwrap();
        file.and_then(|f| s.files.get(&f).cloned())
            .map(|b| (b, s.wrong_checksum))
    };
    match found {
        Some((bytes, lie)) => {
            let sha = sha256_hex(&bytes);
            let advertised = if lie {
                sha256_hex(b"something else")
            } else {
                sha.clone()
            };
            let location = format!("/cdn/{sha}");
            let size = bytes.len().to_string();
            respond(
                &mut socket,
                "302 Found",
                &[
                    ("Location", location.as_str()),
                    ("X-Linked-Etag", &format!("\"{advertised}\"")),
                    ("X-Linked-Size", &size),
                ],
                b"",
            )
            .await
        }
        None => {
            respond(
                &mut socket,
                "404 Not Found",
                &[("X-Error-Code", "EntryNotFound")],
                if method == "HEAD" {
                    b""
                } else {
                    b"Entry not found"
                },
            )
            .await
        }
    }
}

async fn respond(
    socket: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    socket.write_all(out.as_bytes()).await?;
    socket.write_all(body).await?;
    socket.shutdown().await
}
