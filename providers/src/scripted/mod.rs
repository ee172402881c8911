//! A deterministic [`Provider`] for tests and benchmarks.
//!
//! It answers from a closure or a table keyed by the prompt (the last user
//! message), streams the answer in pieces, can wait before answering
//! (tokio sleep, so paused test time applies), fail its first N calls as
//! unavailable, or be switched off. It logs every generation it is asked
//! for — model, messages, options, start and end time — and the most
//! generations it ever ran at once.
//!
//! Put it behind a [`crate::Registry`] like any backend, so routing,
//! profiles and the response cache apply to it as to a real one.
//!
//! It must never be reachable from a configuration: no config name builds
//! it, only code does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::stream::{Running, Streaming};
use crate::{
    ChatMessage, CompletionRequest, GenerationOptions, GenerationStats, ModelInfo, Provider,
    ProviderError, ProviderStatus, PullStream, StreamEvent, TokenStream,
};

mod stream;
#[cfg(test)]
mod tests;

/// Computes the reply to a request.
pub type ReplyFn = dyn Fn(&CompletionRequest) -> Result<String, ProviderError> + Send + Sync;

/// One generation the provider was asked for.
#[derive(Debug, Clone)]
pub struct ScriptedCall {
    /// The model's name in this backend (after routing).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub options: GenerationOptions,
    /// The JSON shape the call asked for.
    pub format: Option<crate::OutputFormat>,
    /// The tools the call offered.
    pub tools: Vec<crate::ToolSpec>,
    pub started: Instant,
    /// When its stream ended or was dropped; `None` while it runs, and for
    /// a call that failed before streaming.
    pub finished: Option<Instant>,
}

impl ScriptedCall {
    /// The last user message: what the call was asked.
    pub fn prompt(&self) -> &str {
        prompt_of(&self.messages)
    }
}

fn prompt_of(messages: &[ChatMessage]) -> &str {
    messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or("", |m| m.content.as_str())
}

/// A reply made of lines `@call NAME {JSON arguments}` is a turn of tool
/// calls (when the request offered tools), as a model with native tool
/// calls would stream them.
pub const CALL: &str = "@call ";

/// The tool calls a `@call` reply names, then the end.
fn tool_calls(text: &str, index: usize, running: Running) -> TokenStream {
    let mut events: Vec<Result<StreamEvent, ProviderError>> = text
        .lines()
        .filter_map(|l| l.strip_prefix(CALL))
        .enumerate()
        .map(|(i, line)| {
            let (name, arguments) = line.split_once(' ').unwrap_or((line, ""));
            Ok(StreamEvent::ToolCall(crate::ToolCall {
                id: format!("scripted_{index}_{i}"),
                name: name.to_owned(),
                arguments: crate::tools::parse_arguments(arguments),
            }))
        })
        .collect();
    events.push(Ok(StreamEvent::Done(GenerationStats {
        prompt_tokens: 1,
        completion_tokens: 1,
        prompt_ms: 0.0,
        first_token_ms: Some(0.0),
        total_ms: 0.0,
        finish_reason: "tool_calls".into(),
        cached: false,
        ..Default::default()
    })));
    Box::pin(futures::stream::iter(events).map(move |event| {
        // Held until the stream is dropped: the call counts as running.
        let _ = &running;
        event
    }))
}

/// A scripted backend. Build it with [`ScriptedProvider::builder`].
pub struct ScriptedProvider {
    backend: String,
    /// Empty: every model name is served.
    models: Vec<String>,
    reply: Arc<ReplyFn>,
    delay: Duration,
    piece_delay: Duration,
    piece_chars: usize,
    fail_first: AtomicU32,
    available: AtomicBool,
    log: Arc<CallLog>,
}

/// What the provider saw; shared with the streams it hands out.
#[derive(Default)]
struct CallLog {
    calls: Mutex<Vec<ScriptedCall>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl CallLog {
    fn lock(&self) -> MutexGuard<'_, Vec<ScriptedCall>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Configures a [`ScriptedProvider`].
pub struct ScriptedBuilder {
    provider: ScriptedProvider,
}

impl ScriptedBuilder {
    /// Serves only these model names (default: any name).
    pub fn models(mut self, models: &[&str]) -> Self {
        self.provider.models = models.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Answers with `reply(request)`; an `Err` fails the call.
    pub fn reply_with(
        mut self,
        reply: impl Fn(&CompletionRequest) -> Result<String, ProviderError> + Send + Sync + 'static,
    ) -> Self {
        self.provider.reply = Arc::new(reply);
        self
    }

    /// Answers from a table keyed by the prompt (the last user message); a
    /// prompt not in the table fails the call with an inference error.
    pub fn table<K: Into<String>, V: Into<String>>(
        self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let table: HashMap<String, String> = entries
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.reply_with(move |request| {
            let prompt = prompt_of(&request.messages);
            table.get(prompt).cloned().ok_or_else(|| {
                ProviderError::Inference(format!("scripted: no reply for the prompt {prompt:?}"))
            })
        })
    }

    /// Waits this long before the first piece.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.provider.delay = delay;
        self
    }

    /// Waits this long between pieces.
    pub fn piece_delay(mut self, delay: Duration) -> Self {
        self.provider.piece_delay = delay;
        self
    }

    /// Streams the answer in pieces of this many characters (default: 4).
    pub fn piece_chars(mut self, chars: usize) -> Self {
        self.provider.piece_chars = chars.max(1);
        self
    }

    /// Fails the first `n` generations with [`ProviderError::Unavailable`].
    pub fn fail_first(self, n: u32) -> Self {
        self.provider.fail_first.store(n, Ordering::SeqCst);
        self
    }

    pub fn build(self) -> Arc<ScriptedProvider> {
        Arc::new(self.provider)
    }
}

impl ScriptedProvider {
    /// A backend called `backend` that echoes the prompt, at once, in
    /// pieces of four characters.
    pub fn builder(backend: &str) -> ScriptedBuilder {
        ScriptedBuilder {
            provider: ScriptedProvider {
                backend: backend.to_owned(),
                models: Vec::new(),
                reply: Arc::new(|request| Ok(prompt_of(&request.messages).to_owned())),
                delay: Duration::ZERO,
                piece_delay: Duration::ZERO,
                piece_chars: 4,
                fail_first: AtomicU32::new(0),
                available: AtomicBool::new(true),
                log: Arc::default(),
            },
        }
    }

    /// Switches the backend on or off; off, every call is unavailable.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// Fails the next `n` generations with [`ProviderError::Unavailable`].
    pub fn fail_next(&self, n: u32) {
        self.fail_first.store(n, Ordering::SeqCst);
    }

    /// Every generation asked for so far, in the order they started.
    pub fn calls(&self) -> Vec<ScriptedCall> {
        self.log.lock().clone()
    }

    pub fn call_count(&self) -> usize {
        self.log.lock().len()
    }

    /// The most generations that ever streamed at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.log.max_running.load(Ordering::SeqCst)
    }

    /// Forgets the calls and the high-water mark (between runs: a call
    /// still streaming would mark the wrong entry finished).
    pub fn clear_log(&self) {
        self.log.lock().clear();
        self.log.max_running.store(0, Ordering::SeqCst);
    }

    fn check(&self, model: &str) -> Result<(), ProviderError> {
        if !self.available.load(Ordering::SeqCst) {
            return Err(self.unavailable("switched off"));
        }
        if !self.models.is_empty() && !self.models.iter().any(|m| m == model) {
            return Err(ProviderError::ModelNotFound {
                model: model.to_owned(),
                hint: format!(
                    "the scripted backend `{}` serves {}",
                    self.backend,
                    self.models.join(", ")
                ),
            });
        }
        Ok(())
    }

    fn unavailable(&self, reason: &str) -> ProviderError {
        ProviderError::Unavailable {
            backend: self.backend.clone(),
            reason: format!("scripted: {reason}"),
        }
    }

    /// Takes one of the scripted failures, if any are left.
    fn take_failure(&self) -> bool {
        self.fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn pieces(text: &str, chars: usize) -> Vec<String> {
    let all: Vec<char> = text.chars().collect();
    all.chunks(chars).map(|c| c.iter().collect()).collect()
}

fn words(messages: &[ChatMessage]) -> u32 {
    messages
        .iter()
        .map(|m| m.content.split_whitespace().count() as u32)
        .sum()
}

#[async_trait]
impl Provider for ScriptedProvider {
    fn backend(&self) -> &str {
        &self.backend
    }

    async fn list(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        self.check("")
            .or_else(|e| match e {
                ProviderError::ModelNotFound { .. } => Ok(()),
                other => Err(other),
            })
            .map(|()| {
                self.models
                    .iter()
                    .map(|name| ModelInfo {
                        name: name.clone(),
                        backend: self.backend.clone(),
                        size_bytes: None,
                        family: Some("scripted".into()),
                        quantization: None,
                        context_length: None,
                    })
                    .collect()
            })
    }

    async fn info(&self, model: &str) -> Result<ModelInfo, ProviderError> {
        self.check(model)?;
        Ok(ModelInfo {
            name: model.to_owned(),
            backend: self.backend.clone(),
            size_bytes: None,
            family: Some("scripted".into()),
            quantization: None,
            context_length: None,
        })
    }

    async fn has_model(&self, model: &str) -> Result<String, ProviderError> {
        self.check(model).map(|()| model.to_owned())
    }

    async fn pull(&self, model: &str) -> Result<PullStream, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "the scripted backend cannot pull {model}"
        )))
    }

    async fn remove(&self, model: &str) -> Result<(), ProviderError> {
        self.check(model)
    }

    async fn status(&self) -> ProviderStatus {
        ProviderStatus {
            backend: self.backend.clone(),
            available: self.available.load(Ordering::SeqCst),
            version: None,
            detail: "scripted".into(),
        }
    }

    async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError> {
        self.check(&request.model)?;
        let index = {
            let mut log = self.log.lock();
            log.push(ScriptedCall {
                model: request.model.clone(),
                messages: request.messages.clone(),
                options: request.options.clone(),
                format: request.format.clone(),
                tools: request.tools.clone(),
                started: Instant::now(),
                finished: None,
            });
            log.len() - 1
        };
        if self.take_failure() {
            return Err(self.unavailable("a scripted failure"));
        }
        let text = (self.reply)(&request)?;
        let running = Running::start(&self.log, index);
        if !request.tools.is_empty() && text.starts_with(CALL) {
            return Ok(tool_calls(&text, index, running));
        }
        let started = Instant::now();
        let stats = GenerationStats {
            prompt_tokens: words(&request.messages),
            completion_tokens: text.split_whitespace().count() as u32,
            prompt_ms: 0.0,
            first_token_ms: None,
            total_ms: 0.0,
            finish_reason: "stop".into(),
            cached: false,
            ..Default::default()
        };
        let state = Streaming {
            pending: pieces(&text, self.piece_chars).into(),
            delay: self.delay,
            piece_delay: self.piece_delay,
            first: true,
            cancel,
            stats: Some(stats),
            started,
            running,
        };
        Ok(Box::pin(futures::stream::unfold(state, Streaming::next)))
    }
}
