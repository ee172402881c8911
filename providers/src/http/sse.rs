//! Server-sent events, read from a byte stream that may cut anywhere.
//!
//! Bytes are kept until a line ends, so a chunk boundary inside a line —
//! or inside a UTF-8 character — loses nothing: a line is decoded only
//! once it is whole. Events follow the HTML living standard's rules:
//! `event:` and `data:` fields (several `data:` lines join with `\n`),
//! comments (`:`) ignored, a blank line dispatches, `\n`, `\r\n` and `\r`
//! all end lines.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` for the default `message` type.
    pub event: Option<String>,
    pub data: String,
}

/// Collects bytes and hands out whole events.
#[derive(Debug, Default)]
pub struct SseBuffer {
    pending: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    /// A `\r` ended the last line; a `\n` right after it is the same break.
    after_cr: bool,
    ready: std::collections::VecDeque<SseEvent>,
}

/// How much a single event may grow before the stream is judged broken.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The stream broke the rules in a way that cannot be read past.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event grew past {MAX_EVENT_BYTES} bytes without ending")]
pub struct EventTooLarge;

impl SseBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next chunk of the body.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), EventTooLarge> {
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' | b'\r' => {
                    self.pending.extend_from_slice(&bytes[start..i]);
                    let line = std::mem::take(&mut self.pending);
                    self.line(&line);
                    if bytes[i] == b'\r' {
                        if bytes.get(i + 1) == Some(&b'\n') {
                            i += 1;
                        } else if i + 1 == bytes.len() {
                            self.after_cr = true;
                        }
                    }
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        self.pending.extend_from_slice(&bytes[start..]);
        let held = self.pending.len() + self.data.iter().map(String::len).sum::<usize>();
        if held > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// The next whole event, if one has arrived.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// The body ended: an unterminated last line still counts, but an event
    /// without its blank line is dropped, as the standard says.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line);
        }
        self.ready.pop_front()
    }

    fn line(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            if !self.data.is_empty() {
                self.ready.push_back(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data).join("\n"),
                });
            }
            self.event = None;
            return;
        }
        let line = String::from_utf8_lossy(raw);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => self.data.push(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            _ => {} // id, retry: nothing here uses them
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_of(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut buffer = SseBuffer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buffer.push(chunk).unwrap();
            while let Some(e) = buffer.next_event() {
                out.push(e);
            }
        }
        out.extend(buffer.finish());
        out
    }

    fn data(text: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: text.into(),
        }
    }

    #[test]
    fn events_survive_any_cut_of_the_stream_even_inside_a_character() {
        let body = "event: delta\r\ndata: {\"t\":\"é€\"}\r\n\r\n: keep-alive\n\ndata: a\ndata: b\n\ndata: [DONE]\n\n";
        let whole = events_of(&[body.as_bytes()]);
        assert_eq!(
            whole,
            vec![
                SseEvent {
                    event: Some("delta".into()),
                    data: "{\"t\":\"é€\"}".into()
                },
                data("a\nb"),
                data("[DONE]"),
            ]
        );
        let bytes = body.as_bytes();
        for cut in 1..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(events_of(&[a, b]), whole, "cut at byte {cut}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(events_of(&singles), whole);
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line_and_an_unfinished_event_is_dropped() {
        assert_eq!(events_of(&[b"data: x\r\rdata: y"]), vec![data("x")]);
    }

    #[test]
    fn an_event_that_never_ends_is_refused() {
        let mut buffer = SseBuffer::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(buffer.push(&big), Err(EventTooLarge));
    }
}
