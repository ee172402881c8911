//! `model_request` / `model_reply`: the models as data (what `%model`
//! shows as tables; `skillctl model`).

use serde::{Deserialize, Serialize};

use super::ExtensionRequest;
use crate::content::ErrorContent;
use crate::RequestType;

/// `model_request` content: `{"action": …, "model": SPEC}`.
///
/// `SPEC` is a model (`name`, `name@backend`) or a routing profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ModelRequest {
    /// Models of every backend.
    List,
    /// One model; without `model`, the session's.
    Info {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// The backends, the session's model and the response cache.
    Status,
    /// Prompt cells of the session use `model` from now on.
    Use { model: String },
    /// Deletes a model.
    Remove { model: String },
    /// Downloads a model, with progress on IOPub.
    Pull { model: String },
}

impl ExtensionRequest for ModelRequest {
    const TYPE: RequestType = RequestType::Model;
    type Answer = ModelReply;
    type Error = ErrorContent;
}

/// What a `model_reply` with `status: ok` carries, tagged by the
/// request's `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ModelReply {
    List {
        models: Vec<ModelEntry>,
        /// Backends that could not be asked (Ollama not running …).
        unavailable: Vec<UnavailableBackend>,
        /// The session's specifier.
        current: String,
    },
    Info {
        model: ModelEntry,
    },
    Status {
        /// In routing order.
        providers: Vec<BackendStatus>,
        current: String,
        /// The `name@backend` the session's specifier leads to now.
        current_resolved: Option<String>,
        /// `None` when the response cache is off.
        cache: Option<CacheStatus>,
    },
    Use {
        model: ModelEntry,
        /// What the session keeps: `name@backend`, or a profile's name.
        current: String,
    },
    Remove {
        /// `name@backend` of the deleted model.
        removed: String,
    },
    Pull {
        pull: PullSummary,
        /// The pulled model, when the backend can describe it.
        model: Option<ModelEntry>,
    },
}

/// A model object: one model of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub backend: String,
    pub size_bytes: Option<u64>,
    pub family: Option<String>,
    pub quantization: Option<String>,
    pub context_length: Option<u32>,
}

/// A backend that could not list its models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnavailableBackend {
    pub backend: String,
    pub error: String,
}

/// A backend as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub backend: String,
    pub available: bool,
    pub version: Option<String>,
    pub detail: String,
}

/// The response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStatus {
    pub entries: usize,
}

/// How a pull ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullSummary {
    /// What was asked for.
    pub model: String,
    /// The backend that pulled it.
    pub backend: String,
    /// The last step the backend reported (`success` when done).
    pub status: String,
    /// The name the backend now knows the model by.
    pub installed: Option<String>,
    pub completed_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub seconds: f64,
}
