//! Model backends for skillkernel, behind one [`Provider`] trait.
//!
//! A provider lists, describes, pulls, removes and runs language models.
//! The kernel talks to providers only through this trait, so an Ollama
//! server and in-process Candle inference look the same to a notebook.
//! Backends arrive with the models work; this crate holds the contract
//! they implement.
//!
//! # What this crate must never do
//!
//! Know anything of Jupyter: no messages, no IOPub, no cells. Progress and
//! tokens come out as plain Rust values and streams that the kernel turns
//! into Jupyter output.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
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
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
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
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Why a provider call failed.
#[derive(Debug, Error)]
pub enum ProviderError {
    #[error("model `{0}` is not available; pull it or choose another")]
    ModelNotFound(String),
    #[error("{backend} is unavailable: {reason}")]
    Unavailable { backend: String, reason: String },
    #[error("generation was cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

/// A stream of text pieces as they are generated.
pub type TokenStream = Pin<Box<dyn Stream<Item = Result<String, ProviderError>> + Send>>;
/// A stream of download progress.
pub type PullStream = Pin<Box<dyn Stream<Item = Result<PullProgress, ProviderError>> + Send>>;

/// A model backend.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The backend name used in model specifiers (`name@backend`).
    fn backend(&self) -> &str;
    async fn list(&self) -> Result<Vec<ModelInfo>, ProviderError>;
    async fn info(&self, model: &str) -> Result<ModelInfo, ProviderError>;
    async fn pull(&self, model: &str) -> Result<PullStream, ProviderError>;
    async fn remove(&self, model: &str) -> Result<(), ProviderError>;
    async fn status(&self) -> ProviderStatus;
    async fn complete(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<Completion, ProviderError>;
    /// Streams text as it is generated; stops early when `cancel` trips.
    async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError>;
}
