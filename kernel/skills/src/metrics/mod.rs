//! Per-skill metrics: load and execution time histograms, executions,
//! errors by code, retries, cache hits and tokens.
//!
//! Recording is a read lock, a map lookup and a few relaxed atomic adds,
//! so the executor records on every run and call. Reading takes a
//! [`MetricsSnapshot`] (serializable, for `%skill metrics` and
//! `skill_reply`) or the Prometheus text exposition
//! ([`SkillMetrics::render_prometheus`]). Skills are keyed by name, every
//! version together. Nothing here blocks on I/O or knows Jupyter.

mod prometheus;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skillkernel_providers::GenerationStats;
use skillkernel_stdx::prometheus::{Histogram, HistogramValues};

use super::ErrorCode;

/// Upper bounds (seconds) of the load-time buckets: loads take µs to ms.
pub const LOAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Upper bounds (seconds) of the execution-time buckets: runs take ms to minutes.
pub const EXECUTION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Every code, in the order errors are counted.
const CODES: [ErrorCode; 10] = [
    ErrorCode::SkillNotFound,
    ErrorCode::ValidationError,
    ErrorCode::SkillExecutionError,
    ErrorCode::SkillTimeout,
    ErrorCode::CircuitBreakerOpen,
    ErrorCode::DependencyError,
    ErrorCode::ProviderUnavailable,
    ErrorCode::SecurityViolation,
    ErrorCode::TrustRequired,
    ErrorCode::InstallError,
];

/// The metrics of every skill. Share it in an `Arc`.
#[derive(Default)]
pub struct SkillMetrics {
    skills: RwLock<HashMap<String, Arc<Counters>>>,
}

struct Counters {
    load: Histogram,
    execution: Histogram,
    executions: AtomicU64,
    errors: [AtomicU64; CODES.len()],
    retries: AtomicU64,
    cache_hits: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            load: Histogram::new(LOAD_BUCKETS),
            execution: Histogram::new(EXECUTION_BUCKETS),
            executions: AtomicU64::new(0),
            errors: Default::default(),
            retries: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
        }
    }
}

/// A histogram's figures as snapshots carry them, with its quantiles.
fn snapshot(h: &Histogram) -> HistogramSnapshot {
    let values = h.values();
    let mut snapshot = HistogramSnapshot {
        count: values.count,
        sum_seconds: values.sum,
        buckets: values
            .buckets
            .into_iter()
            .map(|(le, count)| Bucket { le, count })
            .collect(),
        p50_seconds: None,
        p95_seconds: None,
    };
    snapshot.p50_seconds = snapshot.quantile(0.5);
    snapshot.p95_seconds = snapshot.quantile(0.95);
    snapshot
}

/// A histogram as it stood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    pub count: u64,
    pub sum_seconds: f64,
    /// Cumulative counts per upper bound; observations above the last
    /// bound are only in `count`.
    pub buckets: Vec<Bucket>,
    /// Estimates: the upper bound of the bucket holding the quantile.
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub le: f64,
    pub count: u64,
}

impl HistogramSnapshot {
    /// The upper bound of the bucket holding quantile `q`; `None` with no
    /// observations, or when it lies above the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.buckets.iter().find(|b| b.count >= rank).map(|b| b.le)
    }

    pub fn mean_seconds(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_seconds / self.count as f64)
    }
}

/// One skill's metrics as they stood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillSnapshot {
    pub executions: u64,
    /// Failed executions by code (`SKILL_TIMEOUT`: 2); codes never seen are left out.
    pub errors: BTreeMap<String, u64>,
    pub retries: u64,
    /// Model calls answered from the response cache.
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub load: HistogramSnapshot,
    pub execution: HistogramSnapshot,
}

/// Every skill's metrics, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    pub skills: BTreeMap<String, SkillSnapshot>,
}

impl SkillMetrics {
    pub fn new() -> Self {
        SkillMetrics::default()
    }

    fn counters(&self, skill: &str) -> Arc<Counters> {
        if let Some(c) = self.read().get(skill) {
            return Arc::clone(c);
        }
        let mut map = self.skills.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(skill.to_owned()).or_default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Counters>>> {
        self.skills.read().unwrap_or_else(|e| e.into_inner())
    }

    /// How long loading `skill` took (the registry's figure).
    pub fn record_load(&self, skill: &str, took: Duration) {
        self.counters(skill).load.observe_duration(took);
    }

    /// One execution of `skill`, failed with `error` or not.
    pub fn record_execution(&self, skill: &str, took: Duration, error: Option<ErrorCode>) {
        let c = self.counters(skill);
        c.execution.observe_duration(took);
        c.executions.fetch_add(1, Relaxed);
        if let Some(code) = error {
            let i = CODES.iter().position(|c| *c == code).unwrap_or(0);
            c.errors[i].fetch_add(1, Relaxed);
        }
    }

    pub fn record_retry(&self, skill: &str) {
        self.counters(skill).retries.fetch_add(1, Relaxed);
    }

    /// A model call's tokens, and whether the cache answered it.
    pub fn record_generation(&self, skill: &str, stats: &GenerationStats) {
        let c = self.counters(skill);
        c.prompt_tokens
            .fetch_add(u64::from(stats.prompt_tokens), Relaxed);
        c.completion_tokens
            .fetch_add(u64::from(stats.completion_tokens), Relaxed);
        if stats.cached {
            c.cache_hits.fetch_add(1, Relaxed);
        }
    }

    /// Puts back `skill`'s metrics as a snapshot saved them (a restart);
    /// a histogram whose buckets this build does not have starts empty.
    pub fn restore(&self, skill: &str, saved: &SkillSnapshot) {
        let c = Counters::default();
        c.executions.store(saved.executions, Relaxed);
        for (code, n) in CODES.iter().zip(&c.errors) {
            n.store(
                saved.errors.get(code.as_str()).copied().unwrap_or(0),
                Relaxed,
            );
        }
        c.retries.store(saved.retries, Relaxed);
        c.cache_hits.store(saved.cache_hits, Relaxed);
        c.prompt_tokens.store(saved.prompt_tokens, Relaxed);
        c.completion_tokens.store(saved.completion_tokens, Relaxed);
        for (h, s) in [(&c.load, &saved.load), (&c.execution, &saved.execution)] {
            let values = HistogramValues {
                buckets: s.buckets.iter().map(|b| (b.le, b.count)).collect(),
                count: s.count,
                sum: s.sum_seconds,
            };
            if !h.restore(&values) {
                tracing::warn!(
                    skill,
                    "a saved skill histogram has other buckets; it starts empty"
                );
            }
        }
        self.skills
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(skill.to_owned(), Arc::new(c));
    }

    /// Forgets `skill`'s metrics (`%skill reset`).
    pub fn reset(&self, skill: &str) {
        self.skills
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(skill);
    }

    /// `skill`'s metrics, if it has any.
    pub fn skill(&self, skill: &str) -> Option<SkillSnapshot> {
        self.read().get(skill).map(|c| c.snapshot())
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            skills: self
                .read()
                .iter()
                .map(|(name, c)| (name.clone(), c.snapshot()))
                .collect(),
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every skill.
    pub fn render_prometheus(&self) -> String {
        prometheus::render(&self.snapshot())
    }
}

impl Counters {
    fn snapshot(&self) -> SkillSnapshot {
        SkillSnapshot {
            executions: self.executions.load(Relaxed),
            errors: CODES
                .iter()
                .zip(&self.errors)
                .map(|(code, n)| (code.as_str().to_owned(), n.load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            retries: self.retries.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            prompt_tokens: self.prompt_tokens.load(Relaxed),
            completion_tokens: self.completion_tokens.load(Relaxed),
            load: snapshot(&self.load),
            execution: snapshot(&self.execution),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_into_the_first_bucket_at_or_above_the_value() {
        let m = SkillMetrics::new();
        m.record_execution("s", Duration::from_millis(5), None);
        m.record_execution("s", Duration::from_millis(7), None);
        m.record_execution("s", Duration::from_secs(400), Some(ErrorCode::SkillTimeout));
        let s = m.skill("s").unwrap();
        let h = &s.execution;
        assert_eq!(h.count, 3);
        assert_eq!((h.buckets[0].le, h.buckets[0].count), (0.005, 1));
        assert_eq!((h.buckets[1].le, h.buckets[1].count), (0.01, 2));
        assert_eq!(
            h.buckets.last().unwrap().count,
            2,
            "400 s is above every bound"
        );
        assert!((h.sum_seconds - 400.012).abs() < 1e-9);
        assert_eq!(h.p50_seconds, Some(0.01));
        assert_eq!(h.p95_seconds, None);
        assert_eq!(s.errors, BTreeMap::from([("SKILL_TIMEOUT".into(), 1)]));
        let again = SkillMetrics::new();
        again.restore("s", &s);
        assert_eq!(again.skill("s").unwrap(), s);
        m.reset("s");
        assert!(m.skill("s").is_none());
    }
}
