//! [`Output`]: how a running cell publishes what it produces.
//!
//! Stream text is coalesced: consecutive writes to the same stream are held
//! until the caller flushes (the command runner does so on a short tick),
//! another kind of output is published, or the buffer grows large. Fewer,
//! larger `stream` messages keep IOPub fast and make a slow subscriber's
//! dropped message less likely to matter.

use serde_json::{Map, Value};
use skillkernel_protocol::content::{
    page_payload, ClearOutput, DisplayData, ErrorContent, ExecuteResult, MimeBundle, Stream,
    StreamName,
};
use skillkernel_protocol::Message;

use crate::iopub::Iopub;

/// Stream text held back at most this many bytes before it is published.
const STREAM_BUFFER_BYTES: usize = 64 * 1024;

/// The output side of one execution.
pub struct Output<'a> {
    iopub: &'a Iopub,
    parent: &'a Message,
    silent: bool,
    execution_count: u64,
    pending: Option<Stream>,
    payload: Vec<Value>,
    /// Plain-text record of the output, for history.
    record: String,
    /// Most bytes `record` keeps; the rest is cut with a note.
    record_limit: usize,
    /// Goes into the reply's `metadata`.
    metadata: Map<String, Value>,
}

impl<'a> Output<'a> {
    pub fn new(iopub: &'a Iopub, parent: &'a Message, silent: bool, execution_count: u64) -> Self {
        Output {
            iopub,
            parent,
            silent,
            execution_count,
            pending: None,
            payload: Vec::new(),
            record: String::new(),
            record_limit: 4096,
            metadata: Map::new(),
        }
    }

    /// Keeps up to `limit` bytes of the output's text for history (the
    /// whole output, when the session store keeps it as an artifact).
    pub fn recording_up_to(mut self, limit: usize) -> Self {
        self.record_limit = limit;
        self
    }

    async fn publish(&self, msg_type: &str, content: impl serde::Serialize) {
        if !self.silent {
            self.iopub
                .publish(Some(self.parent), msg_type, content)
                .await;
        }
    }

    /// Writes `text` to stdout or stderr (buffered; see module docs).
    pub async fn stream(&mut self, name: StreamName, text: &str) {
        if text.is_empty() {
            return;
        }
        self.note(text);
        match &mut self.pending {
            Some(p) if p.name == name => p.text.push_str(text),
            _ => {
                self.flush_stream().await;
                self.pending = Some(Stream {
                    name,
                    text: text.to_owned(),
                });
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.text.len() >= STREAM_BUFFER_BYTES)
        {
            self.flush_stream().await;
        }
    }

    /// Publishes buffered stream text now.
    pub async fn flush_stream(&mut self) {
        if let Some(stream) = self.pending.take() {
            self.publish("stream", stream).await;
        }
    }

    /// Publishes `display_data`.
    pub async fn display(&mut self, display: DisplayData) {
        self.flush_stream().await;
        self.note_bundle(&display.data);
        self.publish("display_data", display).await;
    }

    /// Replaces an earlier display with the same `display_id`.
    pub async fn update_display(&mut self, display: DisplayData) {
        self.flush_stream().await;
        self.publish("update_display_data", display).await;
    }

    /// Publishes the cell's `execute_result`.
    pub async fn result(&mut self, data: MimeBundle) {
        self.flush_stream().await;
        self.note_bundle(&data);
        let content = ExecuteResult {
            execution_count: self.execution_count,
            data,
            metadata: Map::new(),
        };
        self.publish("execute_result", content).await;
    }

    /// Asks front ends to clear the cell's output.
    pub async fn clear(&mut self, wait: bool) {
        self.flush_stream().await;
        self.publish("clear_output", ClearOutput { wait }).await;
    }

    /// Adds a `page` payload to the reply (shown in the pager).
    pub fn page(&mut self, data: MimeBundle) {
        self.payload.push(page_payload(data, 0));
    }

    /// Adds the `ask_exit` payload: the front end should close, keeping the
    /// kernel running when `keep_kernel`.
    pub fn ask_exit(&mut self, keep_kernel: bool) {
        self.payload
            .push(serde_json::json!({"source": "ask_exit", "keepkernel": keep_kernel}));
    }

    /// Publishes an `error`.
    pub async fn error(&mut self, error: &ErrorContent) {
        self.flush_stream().await;
        self.note(&format!("{}: {}", error.ename, error.evalue));
        self.publish("error", error).await;
    }

    pub fn execution_count(&self) -> u64 {
        self.execution_count
    }

    /// Sets a key of the reply's `metadata` (e.g. token counts).
    pub fn set_metadata(&mut self, key: &str, value: Value) {
        self.metadata.insert(key.to_owned(), value);
    }

    pub(crate) fn into_parts(self) -> (Vec<Value>, String, Map<String, Value>) {
        (self.payload, self.record, self.metadata)
    }

    fn note(&mut self, text: &str) {
        append_capped(&mut self.record, text, &mut self.record_limit);
    }

    fn note_bundle(&mut self, data: &MimeBundle) {
        if let Some(Value::String(text)) = data.get("text/plain") {
            let text = text.clone();
            self.note(&text);
        }
    }
}

/// A `text/plain` + `text/markdown` bundle.
pub fn markdown_bundle(markdown: &str) -> MimeBundle {
    let mut data = Map::new();
    data.insert("text/plain".into(), Value::String(markdown.to_owned()));
    data.insert("text/markdown".into(), Value::String(markdown.to_owned()));
    data
}

/// A `text/plain`-only bundle.
pub fn text_bundle(text: &str) -> MimeBundle {
    let mut data = Map::new();
    data.insert("text/plain".into(), Value::String(text.to_owned()));
    data
}

/// Appends `text` to `record` while it stays within `limit` bytes. The
/// text that overflows is cut (on a character boundary) with a note saying
/// so, and `limit` drops to 0 so nothing is added after the note.
fn append_capped(record: &mut String, text: &str, limit: &mut usize) {
    let room = limit.saturating_sub(record.len());
    if room == 0 {
        return;
    }
    if text.len() <= room {
        record.push_str(text);
        return;
    }
    let mut end = room;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    record.push_str(&text[..end]);
    record.push_str(&format!("\n[output cut at {limit} bytes]\n"));
    *limit = 0;
}

#[cfg(test)]
mod tests {
    use super::append_capped;

    #[test]
    fn the_output_record_is_cut_at_its_limit_with_a_note() {
        let (mut record, mut limit) = (String::new(), 10);
        append_capped(&mut record, "12345", &mut limit);
        append_capped(&mut record, "6789é!", &mut limit);
        // "é" would straddle byte 10: the cut falls before it.
        assert_eq!(record, "123456789\n[output cut at 10 bytes]\n");
        append_capped(&mut record, "more", &mut limit);
        assert_eq!(record, "123456789\n[output cut at 10 bytes]\n");
    }
}
