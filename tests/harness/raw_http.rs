//! Just enough HTTP/1.1 to be a server whose byte chunking the test
//! decides (the fake Ollama and the fake OpenAI/Anthropic APIs): one
//! request per connection, `Content-Length` request bodies,
//! `Content-Length` or `Transfer-Encoding: chunked` answers.

use std::io;
use std::time::Duration;

use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use tokio::net::{TcpListener, TcpStream};

/// A parsed request.
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Accepts connections forever, each answered on its own task by
/// `handle` with the request read and its body parsed as JSON (`Null`
/// when it is not).
pub async fn serve<S, H, F>(listener: TcpListener, shared: Arc<S>, handle: H)
where
    S: Send + Sync + 'static,
    H: Fn(TcpStream, Request, serde_json::Value, Arc<S>) -> F + Copy + Send + 'static,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut reader = BufReader::new(stream);
            let Ok(request) = read_request(&mut reader).await else {
                return;
            };
            let body = serde_json::from_slice(&request.body).unwrap_or(serde_json::Value::Null);
            let _ = handle(reader.into_inner(), request, body, shared).await;
        });
    }
}

/// Reads one request head and its body.
pub async fn read_request(stream: &mut BufReader<TcpStream>) -> io::Result<Request> {
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, path) = (
        method.to_owned(),
        target.split('?').next().unwrap_or("").to_owned(),
    );
    let mut length = 0usize;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "bad content-length")
                })?;
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// A whole answer with a `Content-Length`, as Go's `net/http` sends small
/// JSON answers.
pub async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    respond_with(stream, status, content_type, &[], body).await
}

/// [`respond`] with extra headers (`Retry-After` …).
pub async fn respond_with(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let extra: String = extra
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

/// A `Transfer-Encoding: chunked` answer written piece by piece.
pub struct Chunked<'a> {
    stream: &'a mut TcpStream,
    /// Pause after each chunk, so each reaches the client as its own read.
    pause: Duration,
}

impl<'a> Chunked<'a> {
    pub async fn start(
        stream: &'a mut TcpStream,
        content_type: &str,
        pause: Duration,
    ) -> io::Result<Self> {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
        Ok(Chunked { stream, pause })
    }

    /// Sends `data` as exactly one HTTP chunk and flushes it.
    pub async fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut frame = format!("{:x}\r\n", data.len()).into_bytes();
        frame.extend_from_slice(data);
        frame.extend_from_slice(b"\r\n");
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        tokio::time::sleep(self.pause).await;
        Ok(())
    }

    pub async fn finish(self) -> io::Result<()> {
        self.stream.write_all(b"0\r\n\r\n").await?;
        self.stream.flush().await
    }
}

/// Cuts a line-based body (NDJSON, server-sent events) into pieces the way
/// a network might: every line is
/// cut in two, inside its first multi-byte UTF-8 character if it has one
/// (else in the middle), and the tail of one line travels with the head of
/// the next.
pub fn split_awkwardly(body: &[u8]) -> Vec<Vec<u8>> {
    let mut cuts = Vec::new();
    let mut start = 0;
    for (i, &b) in body.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &body[start..i];
        let cut = match line.iter().position(|&b| b >= 0xC0) {
            Some(lead) => lead + 1,
            None => line.len() / 2,
        };
        if cut > 0 {
            cuts.push(start + cut);
        }
        start = i + 1;
    }
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts {
        pieces.push(body[from..cut].to_vec());
        from = cut;
    }
    pieces.push(body[from..].to_vec());
    pieces.retain(|p| !p.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_rejoin_and_split_characters() {
        let body = "{\"a\":\"caf\u{e9}\"}\n{\"b\":2}\n".as_bytes();
        let pieces = split_awkwardly(body);
        assert_eq!(pieces.concat(), body);
        assert!(pieces.iter().any(|p| std::str::from_utf8(p).is_err()));
        assert!(pieces.len() >= 3);
    }
}
