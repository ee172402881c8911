//! Model backends for skillkernel, behind one [`Provider`] trait.
//!
//! A provider lists, describes, pulls, removes and runs language models.
//! The kernel talks to providers only through this trait, so an Ollama
//! server and in-process Candle inference look the same to a notebook.
//!
//! * [`candle`] — embedded inference on GGUF files (llama, qwen2, qwen3).
//! * [`ollama`] — a local or remote Ollama server over its REST API.
//! * [`spec`] — model specifiers, `name[@backend]`.
//! * [`registry`] — all backends behind one front: routing, profiles with
//!   a local-first fallback chain, the response cache in front.
//! * [`cache`] — answers to deterministic requests, in sled, with a TTL.
//! * [`config`] — the `[models]` configuration everything above is built from.
//! * [`scripted`] — a deterministic provider for tests and benchmarks.
//! * [`usage`] — the usage ledger, prices and budgets.
//! * [`output`] — the JSON shape a reply must take ([`OutputFormat`]).
//! * [`tools`] — tools a model may call ([`ToolSpec`], [`ToolCall`]).
//!
//! # What this crate must never do
//!
//! Know anything of Jupyter: no messages, no IOPub, no cells. Progress and
//! tokens come out as plain Rust values and streams that the kernel turns
//! into Jupyter output.

mod backends;
pub mod cache;
pub mod candle;
pub mod config;
pub mod http;
pub mod ollama;
pub mod output;
pub mod registry;
pub mod repetition;
pub mod scripted;
pub mod spec;
pub mod tools;
pub mod usage;

pub use cache::ResponseCache;
pub use config::ModelsConfig;
pub use output::OutputFormat;
pub use registry::{Registry, Route};
pub use tools::{ToolCall, ToolChoice, ToolSpec};

use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// A model as a provider reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name used to select it, e.g. `smollm2-135m`.
    pub name: String,
    /// The backend that serves it, e.g. `candle` or `ollama`.
    pub backend: String,
    /// Size on disk in bytes, when known.
    pub size_bytes: Option<u64>,
    /// Architecture or family, e.g. `llama`.
    pub family: Option<String>,
    /// Quantization, e.g. `Q4_1`.
    pub quantization: Option<String>,
    /// Context window in tokens.
    pub context_length: Option<u32>,
}

/// One step of a model download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullProgress {
    pub status: String,
    pub completed_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// On the final `success` step: the name the model is now known by.
    #[serde(default)]
    pub model: Option<String>,
}

/// Whether a backend can serve requests now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderStatus {
    pub backend: String,
    pub available: bool,
    pub version: Option<String>,
    pub detail: String,
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, or `tool` (a tool's result).
    pub role: String,
    pub content: String,
    /// On an assistant turn: the tools it called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` turn: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// On a `tool` turn: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl ChatMessage {
    /// A plain turn.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_name: None,
        }
    }

    /// An assistant turn that called `calls` (after saying `text`, if anything).
    pub fn assistant_calls(text: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        ChatMessage {
            tool_calls: calls,
            ..ChatMessage::new("assistant", text)
        }
    }

    /// The result of `call`.
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Self {
        ChatMessage {
            tool_call_id: Some(call.id.clone()),
            tool_name: Some(call.name.clone()),
            ..ChatMessage::new("tool", content)
        }
    }
}

/// Sampling and length settings for one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationOptions {
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
}

/// A request to generate a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub options: GenerationOptions,
    /// Holds the reply to JSON (a schema) where the backend can; the
    /// caller validates either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    /// Tools the model may call instead of answering; calls come back as
    /// [`StreamEvent::ToolCall`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Whether the model must call one of `tools` this turn.
    #[serde(default)]
    pub tool_choice: ToolChoice,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        GenerationOptions {
            max_tokens: 512,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repeat_penalty: Some(1.2),
            seed: None,
            stop: Vec::new(),
        }
    }
}

/// How a generation went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Time to process the prompt.
    pub prompt_ms: f64,
    /// Time from the request to the first generated token.
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
    /// `stop` (EOS or a stop string), `length` or `cancelled`.
    pub finish_reason: String,
    /// The answer came from the response cache, not from the model.
    #[serde(default)]
    pub cached: bool,
    /// Time spent waiting for a free slot on a busy model before the
    /// prompt began (part of `first_token_ms` and `total_ms`).
    #[serde(default)]
    pub queue_ms: f64,
    /// Prompt tokens whose keys and values came from a cached prefix
    /// instead of being run.
    #[serde(default)]
    pub cached_prompt_tokens: u32,
}

impl GenerationStats {
    /// Generated tokens per second after the first.
    pub fn tokens_per_second(&self) -> f64 {
        let decode_ms = self.total_ms - self.first_token_ms.unwrap_or(self.prompt_ms);
        if self.completion_tokens > 1 && decode_ms > 0.0 {
            (self.completion_tokens - 1) as f64 * 1000.0 / decode_ms
        } else {
            0.0
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    /// Tools the model called (only when the request offered tools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    pub stats: GenerationStats,
}

/// What a generation stream yields: text as it is decoded, tool calls as
/// each is complete, then stats.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Text(String),
    ToolCall(ToolCall),
    Done(GenerationStats),
}

/// Why a provider call failed. Each message ends in what to do about it.
#[derive(Debug, Error)]
pub enum ProviderError {
    #[error("model `{model}` is not available: {hint}")]
    ModelNotFound { model: String, hint: String },
    #[error("{path} is not a usable model: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("{backend} is unavailable: {reason}")]
    Unavailable { backend: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("generation was cancelled")]
    Cancelled,
    /// A budget under `[models.budgets]` is used up; the message names it.
    #[error("{0}")]
    BudgetExceeded(String),
    #[error("{0}")]
    Other(String),
}

/// Generated text as it is decoded, ending with [`StreamEvent::Done`].
pub type TokenStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// Drains a [`TokenStream`] into a [`Completion`].
pub async fn collect(mut stream: TokenStream) -> Result<Completion, ProviderError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Text(piece) => text.push_str(&piece),
            StreamEvent::ToolCall(call) => tool_calls.push(call),
            StreamEvent::Done(stats) => {
                return Ok(Completion {
                    text,
                    tool_calls,
                    stats,
                })
            }
        }
    }
    Err(ProviderError::Other(
        "the generation ended without a result".into(),
    ))
}
/// A stream of download progress.
pub type PullStream = Pin<Box<dyn Stream<Item = Result<PullProgress, ProviderError>> + Send>>;

/// A model backend.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The backend name used in model specifiers (`name@backend`).
    fn backend(&self) -> &str;
    async fn list(&self) -> Result<Vec<ModelInfo>, ProviderError>;
    async fn info(&self, model: &str) -> Result<ModelInfo, ProviderError>;
    /// The backend's own name for `model` when it has it — a cheap check
    /// the registry makes before every routed request.
    async fn has_model(&self, model: &str) -> Result<String, ProviderError> {
        self.info(model).await.map(|info| info.name)
    }
    async fn pull(&self, model: &str) -> Result<PullStream, ProviderError>;
    async fn remove(&self, model: &str) -> Result<(), ProviderError>;
    /// Adds a model from a local file, named `name` or after the file.
    async fn import(
        &self,
        source: &std::path::Path,
        name: Option<&str>,
    ) -> Result<ModelInfo, ProviderError> {
        let _ = name;
        Err(ProviderError::Unsupported(format!(
            "the {} backend cannot import {}",
            self.backend(),
            source.display()
        )))
    }
    async fn status(&self) -> ProviderStatus;
    /// Lets go of state kept to continue a conversation (the embedded
    /// engine's KV caches): the conversation it was for has ended. The
    /// next request rebuilds what it needs. Servers keep their own.
    async fn forget_context(&self) {}

    /// Why the backend cannot be reached, as far as this process saw
    /// lately (no probing): `None` when it can, or it cannot tell.
    fn unreachable(&self) -> Option<String> {
        None
    }
    /// Generates to the end; by default by draining [`Provider::stream`].
    async fn complete(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<Completion, ProviderError> {
        collect(self.stream(request, cancel).await?).await
    }
    /// Streams text as it is generated; stops early when `cancel` trips.
    async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError>;
}
