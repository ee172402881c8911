//! Record and replay: a skill test's model calls answered by a real model
//! and kept (`--record`), or answered from what was kept (`--replay`), so
//! tests run in CI without a model and give the same result every time.
//!
//! [`TestModels`] is a model backend (`test`) put in front of a run: in
//! record mode it hands each call to the kernel's registry and keeps what
//! streamed back; in replay mode it answers each call with what was kept
//! for a request with the same messages, tools and format (its blake3), in
//! the order they were recorded — parallel phases have different prompts,
//! so the order they run in does not matter. A call nothing was recorded
//! for fails, naming the remedy (record again).
//!
//! The recordings live beside the skill, in
//! `skill-tests.recorded.json` (left out of the skill's digest: it never
//! changes what a run does).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use skillkernel_providers::usage::Caller;
use skillkernel_providers::{
    CompletionRequest, GenerationStats, ModelInfo, Provider, ProviderError, ProviderStatus,
    PullStream, Registry, StreamEvent, TokenStream, ToolCall,
};
use skillkernel_stdx::lock;
use tokio_util::sync::CancellationToken;

pub use crate::trust::digest::RECORDING_FILE;
/// The backend's name: the run's model is `MODEL@test`.
pub const BACKEND: &str = "test";

/// What a model call streamed, kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    Text(String),
    ToolCall(ToolCall),
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    /// The test it was recorded in (for a reader; replay goes by `request`).
    pub test: String,
    /// blake3 of the request's messages, tools and format.
    pub request: String,
    /// The model that answered.
    pub model: String,
    pub events: Vec<Recorded>,
}

/// The recordings file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub version: u32,
    /// `name@version` when recorded.
    pub skill: String,
    pub calls: Vec<RecordedCall>,
}

impl Recording {
    /// Where `manifest`'s recordings are: beside it, in its folder — a
    /// folder skill's only (a loose workflow shares its folder).
    pub fn path_for(manifest: &Path) -> Option<PathBuf> {
        crate::format::is_folder_manifest(manifest)
            .then(|| manifest.parent().map(|d| d.join(RECORDING_FILE)))
            .flatten()
    }

    pub fn read(path: &Path) -> Result<Recording, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "no recordings at {} ({e}); run the tests with --record first",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} does not parse ({e}); run the tests with --record again",
                path.display()
            )
        })
    }

    /// Written atomically.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        skillkernel_stdx::files::replace(path, format!("{text}\n").as_bytes(), 0o644)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// The key of a request: what the model was given.
pub fn request_key(request: &CompletionRequest) -> String {
    let shape = serde_json::json!({
        "messages": request.messages,
        "tools": request.tools,
        "format": request.format,
    });
    blake3::hash(shape.to_string().as_bytes())
        .to_hex()
        .to_string()
}

enum Mode {
    Record {
        inner: Arc<Registry>,
        /// Whose calls these are, for the usage ledger and budgets.
        caller: Caller,
        kept: Arc<Mutex<Vec<RecordedCall>>>,
    },
    Replay {
        by_request: Mutex<HashMap<String, VecDeque<Vec<Recorded>>>>,
    },
}

/// The `test` backend of a test run.
pub struct TestModels {
    mode: Mode,
    /// The test running now (recorded with each call).
    test: Mutex<String>,
}

impl TestModels {
    /// Hands calls to `inner` and keeps what comes back.
    pub fn recording(inner: Arc<Registry>, caller: Caller) -> Arc<TestModels> {
        Arc::new(TestModels {
            mode: Mode::Record {
                inner,
                caller,
                kept: Arc::default(),
            },
            test: Mutex::new(String::new()),
        })
    }

    /// Answers from `recording`.
    pub fn replaying(recording: Recording) -> Arc<TestModels> {
        let mut by_request: HashMap<String, VecDeque<Vec<Recorded>>> = HashMap::new();
        for call in recording.calls {
            by_request
                .entry(call.request)
                .or_default()
                .push_back(call.events);
        }
        Arc::new(TestModels {
            mode: Mode::Replay {
                by_request: Mutex::new(by_request),
            },
            test: Mutex::new(String::new()),
        })
    }

    pub fn set_test(&self, name: &str) {
        *lock(&self.test) = name.to_owned();
    }

    /// What was recorded so far (record mode).
    pub fn recorded(&self) -> Vec<RecordedCall> {
        match &self.mode {
            Mode::Record { kept, .. } => lock(kept).clone(),
            Mode::Replay { .. } => Vec::new(),
        }
    }

    fn stats(text_len: usize) -> GenerationStats {
        GenerationStats {
            prompt_tokens: 0,
            completion_tokens: text_len.div_ceil(4) as u32,
            prompt_ms: 0.0,
            first_token_ms: Some(0.0),
            total_ms: 0.0,
            finish_reason: "stop".into(),
            cached: false,
            ..Default::default()
        }
    }
}

#[async_trait]
impl Provider for TestModels {
    fn backend(&self) -> &str {
        BACKEND
    }

    async fn list(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(Vec::new())
    }

    async fn info(&self, model: &str) -> Result<ModelInfo, ProviderError> {
        Ok(ModelInfo {
            name: model.to_owned(),
            backend: BACKEND.into(),
            size_bytes: None,
            family: None,
            quantization: None,
            context_length: None,
        })
    }

    async fn pull(&self, model: &str) -> Result<PullStream, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "a skill test cannot pull {model}"
        )))
    }

    async fn remove(&self, model: &str) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "a skill test cannot remove {model}"
        )))
    }

    async fn status(&self) -> ProviderStatus {
        ProviderStatus {
            backend: BACKEND.into(),
            available: true,
            version: None,
            detail: "skill test".into(),
        }
    }

    async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError> {
        let key = request_key(&request);
        match &self.mode {
            Mode::Replay { by_request } => {
                let events = lock(by_request)
                    .get_mut(&key)
                    .and_then(VecDeque::pop_front)
                    .ok_or_else(|| {
                        ProviderError::Other(format!(
                            "nothing was recorded for this model call (test `{}`): the prompt changed since the recording; run the tests with --record again",
                            lock(&self.test)
                        ))
                    })?;
                let len: usize = events
                    .iter()
                    .map(|e| match e {
                        Recorded::Text(t) => t.len(),
                        Recorded::ToolCall(_) => 0,
                    })
                    .sum();
                let items: Vec<Result<StreamEvent, ProviderError>> = events
                    .into_iter()
                    .map(|e| {
                        Ok(match e {
                            Recorded::Text(t) => StreamEvent::Text(t),
                            Recorded::ToolCall(c) => StreamEvent::ToolCall(c),
                        })
                    })
                    .chain(std::iter::once(Ok(StreamEvent::Done(Self::stats(len)))))
                    .collect();
                Ok(Box::pin(futures::stream::iter(items)))
            }
            Mode::Record {
                inner,
                caller,
                kept,
            } => {
                let (route, stream) = inner.stream_for(caller, request, cancel).await?;
                let model = route.spec();
                let test = lock(&self.test).clone();
                let kept = Arc::clone(kept);
                let mut events = Vec::new();
                let teed = stream.map(move |item| {
                    match &item {
                        Ok(StreamEvent::Text(t)) => events.push(Recorded::Text(t.clone())),
                        Ok(StreamEvent::ToolCall(c)) => events.push(Recorded::ToolCall(c.clone())),
                        Ok(StreamEvent::Done(_)) => lock(&kept).push(RecordedCall {
                            test: test.clone(),
                            request: key.clone(),
                            model: model.clone(),
                            events: std::mem::take(&mut events),
                        }),
                        Err(_) => {}
                    }
                    item
                });
                Ok(Box::pin(teed))
            }
        }
    }
}
