//! `/api/chat` streaming, read line by line from reqwest's byte stream.
//!
//! Not through ollama-rs: its 0.3.6 chat stream loses chunks that split a
//! UTF-8 character, and swallows `{"error": …}` lines (see [`super::ndjson`]).
//!
//! Cancellation drops the response, which closes the connection; Ollama
//! stops generating when its client goes away. As with the Candle backend,
//! a cancel before any answer is [`ProviderError::Cancelled`], and a cancel
//! during generation ends the stream normally with `finish_reason`
//! `cancelled` after the text received so far.

use std::collections::VecDeque;
use std::time::Instant;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::api::{ChatChunk, ChatRequest, Options};
use super::errors;
use super::ndjson::{self, Line, LineBuffer};
use crate::{
    CompletionRequest, GenerationStats, OutputFormat, ProviderError, StreamEvent, TokenStream,
};

/// Sends the chat request and returns its answer as a [`TokenStream`].
pub async fn stream(
    http: &reqwest::Client,
    host: &str,
    request: CompletionRequest,
    cancel: CancellationToken,
) -> Result<TokenStream, ProviderError> {
    if cancel.is_cancelled() {
        return Err(ProviderError::Cancelled);
    }
    let started = Instant::now();
    // Ollama has no `tool_choice`: "must answer now" is asked by offering
    // no tools; "must call" cannot be asked for.
    let tools_offered = match request.tool_choice {
        crate::ToolChoice::None => Vec::new(),
        _ => super::api::wire_tools(&request.tools),
    };
    let body = ChatRequest {
        model: &request.model,
        messages: super::api::wire_messages(&request.messages),
        stream: true,
        options: Options::from(&request.options),
        // Ollama lets `format` override tool calling (it would never call
        // a tool): while tools are offered, the answer is validated instead.
        format: request
            .format
            .as_ref()
            .filter(|_| tools_offered.is_empty())
            .map(|f| match f {
                OutputFormat::Json => serde_json::json!("json"),
                OutputFormat::JsonSchema { schema } => schema.clone(),
            }),
        tools: tools_offered,
    };
    // Ollama answers only once the model is loaded, which can take minutes:
    // no timeout here, but an interrupt must still get through.
    let send = http.post(format!("{host}/api/chat")).json(&body).send();
    let response = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
        sent = send => sent.map_err(|e| errors::transport(host, &e))?,
    };
    let status = response.status();
    if !status.is_success() {
        let body = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
            body = response.bytes() => body.map_err(|e| errors::transport(host, &e))?,
        };
        return Err(errors::refused(
            host,
            Some(&request.model),
            Some(status),
            &body,
        ));
    }
    let owned_host = host.to_owned();
    let body = response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| errors::transport(&owned_host, &e)));
    let mut reader = Reader::new(Box::pin(body), host, cancel, started);
    reader.earlier_calls = request
        .messages
        .iter()
        .map(|m| m.tool_calls.len() as u32)
        .sum();
    Ok(Box::pin(futures::stream::unfold(
        reader,
        |mut reader| async move { reader.next().await.map(|event| (event, reader)) },
    )))
}

/// Turns a byte stream of chat NDJSON into [`StreamEvent`]s.
pub struct Reader<S> {
    /// `None` once the stream has ended, so a finished or cancelled
    /// generation lets go of its connection at once.
    body: Option<S>,
    lines: LineBuffer,
    host: String,
    cancel: CancellationToken,
    started: Instant,
    first_token: Option<Instant>,
    pieces: u32,
    /// Tool calls seen, to number their ids (Ollama gives none).
    calls: u32,
    /// Calls earlier in the conversation: ids go on from there.
    earlier_calls: u32,
    pending: VecDeque<Result<StreamEvent, ProviderError>>,
}

impl<S, B> Reader<S>
where
    S: Stream<Item = Result<B, ProviderError>> + Unpin,
    B: AsRef<[u8]>,
{
    pub fn new(body: S, host: &str, cancel: CancellationToken, started: Instant) -> Self {
        Reader {
            body: Some(body),
            lines: LineBuffer::new(),
            host: host.to_owned(),
            cancel,
            started,
            first_token: None,
            pieces: 0,
            calls: 0,
            earlier_calls: 0,
            pending: VecDeque::new(),
        }
    }

    /// The next event; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, ProviderError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let body = self.body.as_mut()?;
            let read = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => None,
                chunk = body.next() => Some(chunk),
            };
            let Some(chunk) = read else {
                self.cancelled();
                continue;
            };
            match chunk {
                Some(Ok(bytes)) => {
                    self.lines.push(bytes.as_ref());
                    while self.body.is_some() {
                        let Some(line) = self.lines.next_line() else {
                            break;
                        };
                        self.line(&line);
                    }
                }
                Some(Err(e)) => self.fail(e),
                None => {
                    if let Some(rest) = self.lines.finish() {
                        self.line(&rest);
                    }
                    if self.body.is_some() {
                        self.fail(ProviderError::Inference(format!(
                            "Ollama at {} closed the chat stream before it finished",
                            self.host
                        )));
                    }
                }
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        match ndjson::parse::<ChatChunk>(line) {
            Ok(Line::Item(chunk)) => {
                if let Some(text) = chunk.message.as_ref().map(|m| &m.content) {
                    if !text.is_empty() {
                        self.first_token.get_or_insert_with(Instant::now);
                        self.pieces += 1;
                        self.pending.push_back(Ok(StreamEvent::Text(text.clone())));
                    }
                }
                for call in chunk.message.iter().flat_map(|m| &m.tool_calls) {
                    self.first_token.get_or_insert_with(Instant::now);
                    self.calls += 1;
                    let arguments = match &call.function.arguments {
                        // Some versions send the arguments as a JSON string.
                        serde_json::Value::String(text) => crate::tools::parse_arguments(text),
                        serde_json::Value::Null => serde_json::json!({}),
                        other => other.clone(),
                    };
                    self.pending
                        .push_back(Ok(StreamEvent::ToolCall(crate::ToolCall {
                            id: format!("call_{}", self.calls),
                            name: call.function.name.clone(),
                            arguments,
                        })));
                }
                if chunk.done {
                    let stats = stats(&chunk, self.started, self.pieces);
                    self.pending.push_back(Ok(StreamEvent::Done(stats)));
                    self.body = None;
                }
            }
            Ok(Line::Error(message)) => self.fail(ProviderError::Inference(format!(
                "Ollama at {}: {message}",
                self.host
            ))),
            Err(e) => self.fail(ProviderError::Inference(e)),
        }
    }

    fn fail(&mut self, error: ProviderError) {
        self.pending.push_back(Err(error));
        self.body = None;
    }

    /// Ends with what was received; dropping `body` hangs up on Ollama.
    fn cancelled(&mut self) {
        self.body = None;
        let total_ms = ms_since(self.started, Instant::now());
        let first_token_ms = self.first_token.map(|t| ms_since(self.started, t));
        self.pending
            .push_back(Ok(StreamEvent::Done(GenerationStats {
                prompt_tokens: 0,
                completion_tokens: self.pieces,
                prompt_ms: first_token_ms.unwrap_or(total_ms),
                first_token_ms,
                total_ms,
                finish_reason: "cancelled".into(),
                cached: false,
                ..Default::default()
            })));
    }
}

fn ms_since(start: Instant, end: Instant) -> f64 {
    (end - start).as_secs_f64() * 1e3
}

/// Stats from the final `done: true` line, in Ollama's own (server-side)
/// timings so that tokens per second matches what Ollama reports:
/// `first_token_ms` is `total - eval`, which makes the decode time exactly
/// `eval_duration`. Missing fields fall back to what was measured here.
fn stats(done: &ChatChunk, started: Instant, pieces: u32) -> GenerationStats {
    let ms = |ns: u64| ns as f64 / 1e6;
    let local_ms = ms_since(started, Instant::now());
    let total_ms = done.total_duration.map(ms).unwrap_or(local_ms);
    let first_token_ms = done
        .eval_duration
        .map(ms)
        .filter(|eval| *eval <= total_ms)
        .map(|eval| total_ms - eval);
    GenerationStats {
        prompt_tokens: done.prompt_eval_count.unwrap_or(0),
        completion_tokens: done.eval_count.unwrap_or(pieces),
        prompt_ms: done.prompt_eval_duration.map(ms).unwrap_or(0.0),
        first_token_ms,
        total_ms,
        finish_reason: done
            .done_reason
            .clone()
            .unwrap_or_else(|| "stop".to_owned()),
        cached: false,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(
        chunks: Vec<&'static [u8]>,
        cancel: CancellationToken,
    ) -> Reader<impl Stream<Item = Result<&'static [u8], ProviderError>> + Unpin> {
        let body = futures::stream::iter(chunks.into_iter().map(Ok));
        Reader::new(body, "http://test", cancel, Instant::now())
    }

    async fn drain<S, B>(mut r: Reader<S>) -> Vec<Result<StreamEvent, ProviderError>>
    where
        S: Stream<Item = Result<B, ProviderError>> + Unpin,
        B: AsRef<[u8]>,
    {
        let mut out = Vec::new();
        while let Some(event) = r.next().await {
            out.push(event);
        }
        out
    }

    #[tokio::test]
    async fn stats_come_from_the_done_line() {
        let events = drain(reader(
            vec![
                br#"{"message":{"role":"assistant","content":"Hi"},"done":false}
{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","#,
                br#""total_duration":5000000000,"prompt_eval_count":12,"prompt_eval_duration":250000000,"eval_count":40,"eval_duration":4000000000}
"#,
            ],
            CancellationToken::new(),
        ))
        .await;
        let [Ok(StreamEvent::Text(t)), Ok(StreamEvent::Done(s))] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(t, "Hi");
        assert_eq!(s.prompt_tokens, 12);
        assert_eq!(s.completion_tokens, 40);
        assert_eq!(s.prompt_ms, 250.0);
        assert_eq!(s.total_ms, 5000.0);
        assert_eq!(s.first_token_ms, Some(1000.0));
        assert_eq!(s.finish_reason, "length");
        assert!((s.tokens_per_second() - 39.0 / 4.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn an_error_line_ends_the_stream_with_its_message() {
        let events = drain(reader(
            vec![b"{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"error\":\"out of memory\"}\n{\"message\":{\"content\":\"b\"},\"done\":false}\n"],
            CancellationToken::new(),
        ))
        .await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            matches!(&events[1], Err(ProviderError::Inference(m)) if m.contains("out of memory"))
        );
    }

    #[tokio::test]
    async fn a_stream_that_stops_without_done_is_an_error() {
        let events = drain(reader(
            vec![b"{\"message\":{\"content\":\"a\"},\"done\":false}\n"],
            CancellationToken::new(),
        ))
        .await;
        assert!(
            matches!(events.last(), Some(Err(ProviderError::Inference(m))) if m.contains("before it finished"))
        );
    }

    #[tokio::test]
    async fn a_tripped_token_ends_with_cancelled_stats() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let events = drain(reader(vec![b"{\"message\":{\"content\":\"a\"}}\n"], cancel)).await;
        let [Ok(StreamEvent::Done(s))] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(s.finish_reason, "cancelled");
    }

    #[test]
    fn options_use_ollama_names() {
        let o = crate::GenerationOptions {
            max_tokens: 7,
            temperature: 0.5,
            top_k: Some(3),
            top_p: None,
            repeat_penalty: Some(1.2),
            seed: Some(u64::MAX),
            stop: vec!["\n\n".into()],
        };
        let v = serde_json::to_value(Options::from(&o)).unwrap_or_default();
        assert_eq!(v["num_predict"], 7);
        assert_eq!(v["top_k"], 3);
        assert!(v.get("top_p").is_none());
        assert_eq!(v["seed"], i64::MAX);
        assert_eq!(v["stop"][0], "\n\n");
    }
}
