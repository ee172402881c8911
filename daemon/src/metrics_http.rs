//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1 on the
//! address `[metrics] listen` names, answering with the kernel's metrics
//! page ([`KernelHandle::metrics_page`]).
//!
//! Deliberately small: one request per connection (`Connection: close`),
//! a request head of at most 8 KiB read within 5 s, at most 32
//! connections at once (more are closed as they arrive), so a scrape
//! flood or a slow client costs bounded memory and never reaches the
//! kernel's channels. With `bearer_token` set, a scrape without
//! `Authorization: Bearer <token>` gets 401.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use skillkernel_kernel::KernelHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 32;
/// Time a whole exchange may take, sending the page included: a client
/// that stops reading gives its slot back.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Holds one of the [`MAX_CONNECTIONS`] slots; given back when dropped,
/// however the connection's task ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoint, bound.
pub struct MetricsServer {
    listener: TcpListener,
    token: Option<Arc<str>>,
}

impl MetricsServer {
    /// Binds `listen` (`host:port`).
    pub async fn bind(listen: &str, token: Option<&str>) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(listen).await?;
        Ok(MetricsServer {
            listener,
            token: token.map(Arc::from),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves scrapes until the task is aborted.
    pub async fn serve(self, kernel: KernelHandle) {
        let active = Arc::new(AtomicUsize::new(0));
        let mut refused = 0u64;
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(%peer, refused, "metrics: too many scrapes at once; closing new ones");
                }
                continue;
            }
            active.fetch_add(1, Ordering::Relaxed);
            let slot = Slot(active.clone());
            let (kernel, token) = (kernel.clone(), self.token.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let answered =
                    tokio::time::timeout(ANSWER_TIMEOUT, answer(stream, &kernel, token.as_deref()));
                match answered.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: scrape failed"),
                    Err(_) => tracing::debug!(%peer, "metrics: scrape took too long; closed"),
                }
            });
        }
    }
}

/// Reads one request and answers it.
async fn answer(
    mut stream: TcpStream,
    kernel: &KernelHandle,
    token: Option<&str>,
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return respond(&mut stream, 431, "request head too large\n", false).await,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let request = Request::parse(&head);
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return respond(&mut stream, 405, "only GET\n", false).await;
    }
    if request.path.split('?').next() != Some("/metrics") {
        return respond(&mut stream, 404, "the metrics are at /metrics\n", head_only).await;
    }
    if let Some(token) = token {
        // The scheme's name is case-insensitive (RFC 7235).
        let sent = request
            .authorization
            .and_then(|a| a.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credentials)| credentials.trim());
        if !sent.is_some_and(|s| {
            skillkernel_stdx::secret::constant_time_eq(s.as_bytes(), token.as_bytes())
        }) {
            return respond(&mut stream, 401, "a bearer token is required\n", head_only).await;
        }
    }
    let page = kernel.metrics_page();
    respond(&mut stream, 200, &page, head_only).await
}

/// The request head (up to the blank line), or `None` past [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

struct Request<'a> {
    method: &'a str,
    path: &'a str,
    authorization: Option<&'a str>,
}

impl<'a> Request<'a> {
    fn parse(head: &'a str) -> Request<'a> {
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("");
        let path = first.next().unwrap_or("");
        let authorization = lines.find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("authorization")
                .then(|| value.trim())
        });
        Request {
            method,
            path,
            authorization,
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let content_type = if status == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        head.push_str("WWW-Authenticate: Bearer\r\n");
    }
    if status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_and_authorization_are_read() {
        let r = Request::parse(
            "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nauthorization:  bearer s3cret \r\n\r\n",
        );
        assert_eq!((r.method, r.path), ("GET", "/metrics?x=1"));
        assert_eq!(r.authorization, Some("bearer s3cret"));
    }
}
