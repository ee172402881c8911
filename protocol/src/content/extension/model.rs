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
    /// What model calls used and cost: today and the last `days` (7 when
    /// absent), by model and by skill, and the budgets.
    Usage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        days: Option<u32>,
    },
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
    Usage {
        usage: UsageSummary,
    },
}

/// A model object: one model of one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub backend: String,
    pub size_bytes: Option<u64>,
    pub family: Option<String>,
    pub quantization: Option<String>,
    pub context_length: Option<u32>,
    /// Its price from `[models.prices]`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<ModelPrice>,
}

/// Per million tokens, in the currency the configuration prices in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
}

/// The `usage` answer: see [`ModelRequest::Usage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageSummary {
    /// The local day the report was made, `YYYY-MM-DD`.
    pub today: String,
    pub days: u32,
    pub today_totals: UsageTotals,
    pub period_totals: UsageTotals,
    /// `name@backend`, costliest first.
    pub by_model: Vec<UsageRow>,
    /// Skill names; prompt cells are `(prompt cells)`.
    pub by_skill: Vec<UsageRow>,
    pub budgets: Vec<BudgetStatus>,
    /// Ledger lines that could not be read.
    pub unreadable_lines: usize,
}

/// Sums over a set of model calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What the priced calls cost.
    pub cost: f64,
    /// Calls to models with no price, not in `cost`.
    pub unpriced_calls: u64,
    pub cached_calls: u64,
    pub mean_first_token_ms: Option<f64>,
    pub total_ms: f64,
}

/// One model's or skill's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub key: String,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// A daily budget and today's spend against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// `daily`, or `skill NAME`.
    pub name: String,
    pub limit: f64,
    pub spent: f64,
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
