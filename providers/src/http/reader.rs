//! One streamed answer: server-sent events in, [`StreamEvent`]s out.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::dialect::{Decoded, Dialect};
use super::pool::Lease;
use super::sse::SseBuffer;
use crate::{GenerationStats, ProviderError, StreamEvent};

pub type Body = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// What the reader has to say next.
pub enum Step {
    Text(String),
    /// A tool call, complete: given once the answer has ended.
    ToolCall(crate::ToolCall),
    /// The first piece of a tool call arrived: the answer has begun (what
    /// the first-byte timeout waits for); nothing to show yet.
    Started,
    /// The answer ended normally.
    Done(GenerationStats),
    /// The answer broke off, with what happened.
    Failed(String),
}

/// Reads one answer's events.
pub struct Reader {
    body: Option<Body>,
    sse: SseBuffer,
    dialect: Arc<dyn Dialect>,
    cancel: CancellationToken,
    /// Held until the answer ends: the host's count of requests in flight.
    lease: Option<Lease>,
    pending: VecDeque<Decoded>,
    started: Instant,
    first_text: Option<Instant>,
    pieces: u32,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    /// An estimate for servers that report no usage.
    prompt_estimate: u32,
    finish: Option<String>,
    text_seen: bool,
    /// Tool calls being assembled, by their index in the answer: id,
    /// name, arguments' JSON text so far.
    calls: std::collections::BTreeMap<usize, (String, String, String)>,
}

impl Reader {
    pub fn new(
        body: Body,
        dialect: Arc<dyn Dialect>,
        cancel: CancellationToken,
        lease: Lease,
        started: Instant,
        prompt_estimate: u32,
    ) -> Self {
        Reader {
            body: Some(body),
            sse: SseBuffer::new(),
            dialect,
            cancel,
            lease: Some(lease),
            pending: VecDeque::new(),
            started,
            first_text: None,
            pieces: 0,
            prompt_tokens: None,
            completion_tokens: None,
            prompt_estimate,
            finish: None,
            text_seen: false,
            calls: Default::default(),
        }
    }

    /// The next step; `None` once the answer has ended.
    pub async fn next(&mut self) -> Option<Step> {
        loop {
            while let Some(decoded) = self.pending.pop_front() {
                match decoded {
                    Decoded::Text(text) => {
                        self.first_text.get_or_insert_with(Instant::now);
                        self.pieces += 1;
                        self.text_seen = true;
                        return Some(Step::Text(text));
                    }
                    Decoded::Usage {
                        prompt_tokens,
                        completion_tokens,
                    } => {
                        self.prompt_tokens = prompt_tokens.or(self.prompt_tokens);
                        self.completion_tokens = completion_tokens.or(self.completion_tokens);
                    }
                    Decoded::ToolCallPart {
                        index,
                        id,
                        name,
                        arguments,
                    } => {
                        let first = self.first_text.is_none();
                        self.first_text.get_or_insert_with(Instant::now);
                        let call = self.calls.entry(index).or_default();
                        if let Some(id) = id {
                            call.0 = id;
                        }
                        if let Some(name) = name {
                            call.1.push_str(&name);
                        }
                        call.2.push_str(&arguments);
                        if first {
                            return Some(Step::Started);
                        }
                    }
                    Decoded::Finish(reason) => self.finish = Some(reason),
                    Decoded::Error(message) => return Some(self.fail(message)),
                    Decoded::Done => {
                        if let Some(call) = self.take_call() {
                            self.pending.push_front(Decoded::Done);
                            return Some(call);
                        }
                        return Some(self.done(None));
                    }
                }
            }
            let body = self.body.as_mut()?;
            let chunk = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Some(self.done(Some("cancelled"))),
                chunk = body.next() => chunk,
            };
            match chunk {
                Some(Ok(bytes)) => {
                    if let Err(e) = self.sse.push(&bytes) {
                        return Some(self.fail(e.to_string()));
                    }
                    while let Some(event) = self.sse.next_event() {
                        let decoded = self.dialect.decode(event.event.as_deref(), &event.data);
                        self.pending.extend(decoded);
                    }
                }
                Some(Err(e)) => {
                    return Some(self.fail(format!(
                        "the connection broke: {}",
                        super::errors::root_cause(&e)
                    )))
                }
                None => {
                    if let Some(event) = self.sse.finish() {
                        let decoded = self.dialect.decode(event.event.as_deref(), &event.data);
                        self.pending.extend(decoded);
                        self.pending.push_back(Decoded::Done);
                        continue;
                    }
                    // A server that said why it stopped but not `[DONE]`
                    // has still finished its answer.
                    if self.finish.is_some() {
                        self.pending.push_back(Decoded::Done);
                        continue;
                    }
                    return Some(
                        self.fail("the server closed the stream before the answer ended".into()),
                    );
                }
            }
        }
    }

    /// The next assembled tool call, once the answer is complete.
    fn take_call(&mut self) -> Option<Step> {
        let (index, (id, name, arguments)) = self.calls.pop_first()?;
        Some(Step::ToolCall(crate::ToolCall {
            id: if id.is_empty() {
                format!("call_{index}")
            } else {
                id
            },
            name,
            arguments: crate::tools::parse_arguments(&arguments),
        }))
    }

    fn fail(&mut self, message: String) -> Step {
        self.body = None;
        self.pending.clear();
        if let Some(lease) = self.lease.take() {
            // The server is alive (it answered); the request failed.
            drop(lease);
        }
        Step::Failed(message)
    }

    fn done(&mut self, forced: Option<&str>) -> Step {
        self.body = None;
        self.pending.clear();
        if let Some(lease) = self.lease.take() {
            lease.host().succeeded();
        }
        let total = self.started.elapsed().as_secs_f64() * 1e3;
        let first = self
            .first_text
            .map(|t| (t - self.started).as_secs_f64() * 1e3);
        let finish = match forced.or(self.finish.as_deref()) {
            Some("stop" | "end_turn" | "stop_sequence" | "eos") | None => "stop",
            Some("length" | "max_tokens") => "length",
            Some("tool_calls" | "tool_use") => "tool_calls",
            Some(other) => other,
        };
        Step::Done(GenerationStats {
            prompt_tokens: self.prompt_tokens.unwrap_or(self.prompt_estimate),
            completion_tokens: self.completion_tokens.unwrap_or(self.pieces),
            prompt_ms: first.unwrap_or(total),
            first_token_ms: first,
            total_ms: total,
            finish_reason: finish.to_owned(),
            cached: false,
            ..Default::default()
        })
    }
}

/// The rest of an answer as a token stream: `first` (already read), then
/// whatever the reader yields. A failure after text is an error that keeps
/// the text already streamed.
pub fn token_stream(first: Vec<Step>, reader: Reader, describe: String) -> crate::TokenStream {
    let state = (VecDeque::from(first), Some(reader), describe);
    Box::pin(futures::stream::unfold(
        state,
        |(mut queued, mut reader, describe)| async move {
            let step = loop {
                let step = match queued.pop_front() {
                    Some(step) => step,
                    None => reader.as_mut()?.next().await?,
                };
                if !matches!(step, Step::Started) {
                    break step;
                }
            };
            let event = match step {
                Step::Text(text) => Ok(StreamEvent::Text(text)),
                Step::ToolCall(call) => Ok(StreamEvent::ToolCall(call)),
                Step::Started => unreachable!("skipped above"),
                Step::Done(stats) => {
                    reader = None;
                    Ok(StreamEvent::Done(stats))
                }
                Step::Failed(message) => {
                    reader = None;
                    Err(ProviderError::Inference(format!(
                    "{describe} broke off the answer: {message}; the text received so far is kept"
                )))
                }
            };
            Some((event, (queued, reader, describe)))
        },
    ))
}
