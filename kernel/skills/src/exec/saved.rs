//! What a skill's runs leave that outlives the kernel process: its
//! metrics and its circuit breaker ([`SavedSkill`]).
//!
//! The executor hands each skill's [`SavedSkill`] to the host's
//! [`SkillStateSink`] whenever a run of it ends (the kernel writes it to
//! its session store), and takes saved ones back at start
//! ([`Executor::restore`]). The engine never writes a file itself.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::breaker::SavedBreaker;
use super::Executor;
use crate::metrics::SkillSnapshot;

/// One skill's state as saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedSkill {
    #[serde(default)]
    pub metrics: Option<SkillSnapshot>,
    #[serde(default)]
    pub breaker: Option<SavedBreaker>,
}

/// Where the executor sends a skill's state when a run of it ends.
pub trait SkillStateSink: Send + Sync {
    fn save(&self, skill: &str, state: &SavedSkill);
}

impl Executor {
    /// Skill `skill`'s metrics and breaker as they stand, to save.
    pub fn saved(&self, skill: &str) -> SavedSkill {
        SavedSkill {
            metrics: self.metrics.skill(skill),
            breaker: self.breakers.saved(skill),
        }
    }

    /// Puts back what a previous process saved of `skill`.
    pub fn restore(&self, skill: &str, saved: &SavedSkill) {
        if let Some(m) = &saved.metrics {
            self.metrics.restore(skill, m);
        }
        if let Some(b) = &saved.breaker {
            self.breakers.restore(skill, b);
        }
    }

    /// Sends each skill's state to `sink` when a run of it ends (set once;
    /// later calls are ignored).
    pub fn set_sink(&self, sink: Arc<dyn SkillStateSink>) {
        let _ = self.sink.set(sink);
    }

    pub(super) fn save(&self, skill: &str) {
        if let Some(sink) = self.sink.get() {
            sink.save(skill, &self.saved(skill));
        }
    }
}
