//! NDJSON reassembly for Ollama's streamed responses.
//!
//! HTTP chunk boundaries mean nothing to Ollama's stream: a chunk can end in
//! the middle of a JSON line or of a multi-byte UTF-8 character. ollama-rs
//! 0.3.6's chat stream decodes each chunk as UTF-8 on its own (dropping any
//! chunk that splits a character) and discards lines it cannot parse, which
//! is where Ollama's `{"error": …}` lines go. Here bytes are buffered until a
//! `\n` completes a line, only complete lines are decoded, and an error line
//! is an error.

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Collects bytes and hands out complete lines.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// How far `buf` is known to hold no `\n`, so a long line arriving in
    /// many chunks is scanned once, not once per chunk.
    scanned: usize,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete, non-blank line without its `\n` (or `\r\n`).
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let at = self.buf[self.scanned..].iter().position(|&b| b == b'\n');
            let Some(at) = at else {
                self.scanned = self.buf.len();
                return None;
            };
            let end = self.scanned + at;
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            self.scanned = 0;
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(line);
            }
        }
    }

    /// What is left when the stream ends: a last line without a `\n`.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.scanned = 0;
        let rest = std::mem::take(&mut self.buf);
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// One parsed line: a value, or the error Ollama reported in its place.
#[derive(Debug, PartialEq)]
pub enum Line<T> {
    Item(T),
    Error(String),
}

#[derive(Deserialize)]
struct ErrorLine {
    error: String,
}

/// Parses one line. `{"error": "…"}` is checked first: a lenient `T` (all
/// fields defaulted) would otherwise accept it as an empty item.
pub fn parse<T: DeserializeOwned>(line: &[u8]) -> Result<Line<T>, String> {
    if let Ok(ErrorLine { error }) = serde_json::from_slice::<ErrorLine>(line) {
        return Ok(Line::Error(error));
    }
    serde_json::from_slice::<T>(line)
        .map(Line::Item)
        .map_err(|e| {
            let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
            format!("unreadable line from Ollama ({e}): {shown}")
        })
}

/// The message of an `{"error": "…"}` body, if that is what `body` is.
pub fn error_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorLine>(body)
        .ok()
        .map(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut buf = LineBuffer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.push(chunk);
            while let Some(line) = buf.next_line() {
                out.push(String::from_utf8(line).unwrap_or_else(|e| panic!("{e}")));
            }
        }
        if let Some(rest) = buf.finish() {
            out.push(String::from_utf8(rest).unwrap_or_else(|e| panic!("{e}")));
        }
        out
    }

    #[test]
    fn a_line_split_across_chunks_is_joined() {
        assert_eq!(
            lines(&[b"{\"a\":", b"1}\n{\"b\":2}\n"]),
            ["{\"a\":1}", "{\"b\":2}"]
        );
    }

    #[test]
    fn a_character_split_across_chunks_is_joined() {
        let text = "caf\u{e9} \u{1f1eb}\u{1f1f7}\n".as_bytes();
        // Split inside the two-byte é and inside the four-byte flag letter.
        let (a, rest) = text.split_at(4);
        let (b, c) = rest.split_at(4);
        assert_eq!(lines(&[a, b, c]), ["caf\u{e9} \u{1f1eb}\u{1f1f7}"]);
    }

    #[test]
    fn blank_lines_and_crlf_are_skipped_and_a_last_unterminated_line_kept() {
        assert_eq!(lines(&[b"\n\r\n{}\r\n  \n{\"x\":1}"]), ["{}", "{\"x\":1}"]);
    }

    #[test]
    fn many_lines_in_one_chunk() {
        assert_eq!(lines(&[b"1\n2\n3\n"]), ["1", "2", "3"]);
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    struct Lenient {
        #[serde(default)]
        status: String,
    }

    #[test]
    fn an_error_line_is_an_error_even_for_a_lenient_type() {
        assert_eq!(
            parse::<Lenient>(br#"{"error":"boom"}"#),
            Ok(Line::Error("boom".into()))
        );
        assert_eq!(
            parse::<Lenient>(br#"{"status":"ok"}"#),
            Ok(Line::Item(Lenient {
                status: "ok".into()
            }))
        );
        assert!(parse::<Lenient>(b"not json").is_err());
    }
}
