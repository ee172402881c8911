//! The proxy's HTTP side: `CONNECT host:port` (a tunnel, for HTTPS) and
//! absolute-form requests (`GET http://host:port/path`, plain HTTP), each
//! refused with `403` when the host is not on the allow-list.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{in_time, splice, Refusal, Run, MAX_HEAD};

pub(super) async fn serve(mut client: UnixStream, first: u8, run: &Run) {
    let (mut head, end) = match in_time(read_head(&mut client, first)).await {
        Some(Ok(read)) => read,
        Some(Err(true)) => return answer(&mut client, 431, "request head too large").await,
        Some(Err(false)) | None => return,
    };
    let rest = head.split_off(end);
    let Ok(text) = std::str::from_utf8(&head) else {
        return answer(&mut client, 400, "the request head is not UTF-8").await;
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut words = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return answer(&mut client, 400, "not an HTTP request").await;
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = host_port(target, None) else {
            return answer(&mut client, 400, "CONNECT needs host:port").await;
        };
        if !run.check("http_connect", &host, port) {
            return refuse(&mut client, &host, port).await;
        }
        let mut upstream = match run.connect("http_connect", &host, port).await {
            Ok(upstream) => upstream,
            Err(Refusal::Denied) => return refuse(&mut client, &host, port).await,
            Err(Refusal::Failed) => {
                return answer(&mut client, 502, "cannot connect to the host").await
            }
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
            || upstream.write_all(&rest).await.is_err()
        {
            return;
        }
        return splice(client, upstream).await;
    }
    let Some(after_scheme) = target.strip_prefix("http://") else {
        return answer(
            &mut client,
            400,
            "only CONNECT and http:// requests in absolute form go through this proxy",
        )
        .await;
    };
    let (authority, path) = match after_scheme.find('/') {
        Some(i) => (&after_scheme[..i], &after_scheme[i..]),
        None => (after_scheme, "/"),
    };
    let Some((host, port)) = host_port(authority, Some(80)) else {
        return answer(&mut client, 400, "no host in the request").await;
    };
    if !run.check("http", &host, port) {
        return refuse(&mut client, &host, port).await;
    }
    let mut upstream = match run.connect("http", &host, port).await {
        Ok(upstream) => upstream,
        Err(Refusal::Denied) => return refuse(&mut client, &host, port).await,
        Err(Refusal::Failed) => {
            return answer(&mut client, 502, "cannot connect to the host").await
        }
    };
    // Origin form, one request per connection: a client reusing the
    // connection for another host must come back through the check.
    let mut out = format!("{method} {path} {version}\r\n");
    // The Host header is the checked authority: a different one would
    // ask the allowed server (a CDN, a shared host) for another site.
    let host_header = authority.rsplit('@').next().unwrap_or(authority);
    out.push_str(&format!("Host: {host_header}\r\n"));
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        let hop = [
            "host",
            "connection",
            "proxy-connection",
            "proxy-authorization",
            "keep-alive",
        ];
        if !hop.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(out.as_bytes()).await.is_err() || upstream.write_all(&rest).await.is_err()
    {
        return;
    }
    splice(client, upstream).await;
}

/// Reads to the end of the request head: the bytes and where the head
/// ends; `Err(true)`: too large, `Err(false)`: closed.
async fn read_head(client: &mut UnixStream, first: u8) -> Result<(Vec<u8>, usize), bool> {
    let mut head = vec![first];
    loop {
        if let Some(end) = find(&head, b"\r\n\r\n") {
            return Ok((head, end + 4));
        }
        if head.len() > MAX_HEAD {
            return Err(true);
        }
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(false),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `host:port`, `[v6]:port` or, with a default port, `host`.
fn host_port(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port?,
        };
        (format!("[{h}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port?),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

async fn refuse(client: &mut UnixStream, host: &str, port: u16) {
    let reason = format!(
        "{host}:{port} is not on this program's network allow-list \
         (permissions.network, or [sandbox] network for cells)"
    );
    answer(client, 403, &reason).await;
}

async fn answer(client: &mut UnixStream, status: u16, reason: &str) {
    let phrase = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        _ => "Bad Gateway",
    };
    let body = format!("skillkernel sandbox proxy: {reason}\n");
    let response = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn authorities_give_host_and_port() {
        assert_eq!(host_port("a.b:443", None), Some(("a.b".into(), 443)));
        assert_eq!(host_port("a.b", Some(80)), Some(("a.b".into(), 80)));
        assert_eq!(host_port("a.b", None), None);
        assert_eq!(host_port("[::1]:8080", None), Some(("[::1]".into(), 8080)));
        assert_eq!(host_port("u:p@a.b:81", None), Some(("a.b".into(), 81)));
        assert_eq!(host_port(":80", None), None);
    }
}
