//! Usage and cost of model calls.
//!
//! Every generation the [`Registry`](crate::Registry) runs for a
//! [`Caller`] is recorded — tokens in and out (the server's counts, else
//! the backend's own), time to first token, duration, backend, model,
//! skill and session — in a [`Ledger`] under the state directory. Prices
//! (`[models.prices]`) turn tokens into cost; budgets (`[models.budgets]`)
//! refuse a priced call, or hand it to the default model, once the day's
//! spend has reached them.
//!
//! * [`ledger`] — the files: JSON lines, one file per month, appended by
//!   every kernel that shares the state directory, read back for reports
//!   and for the day's spend.
//! * [`record`] — the stream wrapper that writes one [`UsageRecord`] when a
//!   generation ends, fails or is dropped.
//! * [`report`] — totals for today, the last N days, by model and by skill.
//! * [`budget`] — whether a priced call may go ahead.
//!
//! # What this module must never do
//!
//! Lose a generation because the ledger cannot be written: a failed write
//! is logged and the answer still reaches the caller.

pub mod budget;
pub mod ledger;
pub mod record;
pub mod report;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use ledger::Ledger;
pub use report::{BudgetState, Totals, UsageReport};

/// Who asked for a generation: the kernel session, and the skill when a
/// skill made the call (a prompt cell has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub session: String,
    pub skill: Option<String>,
}

impl Caller {
    pub fn session(session: impl Into<String>) -> Self {
        Caller {
            session: session.into(),
            skill: None,
        }
    }

    pub fn skill(session: impl Into<String>, skill: impl Into<String>) -> Self {
        Caller {
            session: session.into(),
            skill: Some(skill.into()),
        }
    }
}

/// One model call, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When it ended, RFC 3339 with the local offset.
    pub at: String,
    /// The local day it counts towards.
    pub day: NaiveDate,
    pub session: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    pub backend: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
    /// `stop`, `length`, `repetition`, `cancelled`, or `error` for a call
    /// that failed after it started.
    pub finish_reason: String,
    /// Answered from the response cache: no tokens were paid for.
    #[serde(default)]
    pub cached: bool,
    /// What it cost, when the model has a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

impl UsageRecord {
    /// `model@backend`.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.model, self.backend)
    }
}
