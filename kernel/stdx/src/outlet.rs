//! How an outlet for telemetry is doing: a place the process sends what it
//! may lose (spans to a collector, lines to a log file) without waiting.
//!
//! The writer counts what it delivered and what it dropped; a drop that
//! starts a failing stretch, and the recovery that ends one, are reported
//! to the caller exactly once each, so it can say so once in the log and
//! not once per lost item. Readers (status pages, metrics) take a
//! [`OutletStatus`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::sync::lock;

/// Counters and the current failure of one outlet. Shared behind an `Arc`.
#[derive(Debug)]
pub struct Outlet {
    name: &'static str,
    target: String,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// While failing: why, and what was dropped since it began.
    failing: Mutex<Option<(String, u64)>>,
}

/// What an outlet has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutletStatus {
    /// What flows out: `traces`, `log`.
    pub name: &'static str,
    /// Where to: a URL, a file.
    pub target: String,
    pub delivered: u64,
    pub dropped: u64,
    /// Why it is dropping now, when it is.
    pub failing: Option<String>,
}

impl Outlet {
    pub fn new(name: &'static str, target: impl Into<String>) -> Self {
        Self {
            name,
            target: target.into(),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failing: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// `count` items got through. Returns how many were dropped in the
    /// failing stretch this ends, and why, if one was going on.
    pub fn delivered(&self, count: u64) -> Option<(u64, String)> {
        self.delivered.fetch_add(count, Relaxed);
        lock(&self.failing).take().map(|(why, lost)| (lost, why))
    }

    /// `count` items got through, but the failing stretch (if any) goes
    /// on: a writer that still sees drops elsewhere (a full queue) must
    /// not announce a recovery with every batch that gets out.
    pub fn delivered_during(&self, count: u64) {
        self.delivered.fetch_add(count, Relaxed);
    }

    /// `count` items were dropped because of `why`. Returns true when this
    /// begins a failing stretch: the one time to tell the operator.
    pub fn dropped(&self, count: u64, why: &str) -> bool {
        self.dropped.fetch_add(count, Relaxed);
        let mut failing = lock(&self.failing);
        match failing.as_mut() {
            Some((reason, lost)) => {
                *lost += count;
                // The latest cause is the one worth showing.
                if reason != why {
                    why.clone_into(reason);
                }
                false
            }
            None => {
                *failing = Some((why.to_owned(), count));
                true
            }
        }
    }

    pub fn status(&self) -> OutletStatus {
        OutletStatus {
            name: self.name,
            target: self.target.clone(),
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            failing: lock(&self.failing).as_ref().map(|(why, _)| why.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_stretch_is_reported_once_at_each_end() {
        let outlet = Outlet::new("traces", "http://127.0.0.1:4318");
        assert_eq!(outlet.delivered(3), None);
        assert!(outlet.dropped(2, "connection refused"));
        assert!(!outlet.dropped(5, "timed out"));
        let status = outlet.status();
        assert_eq!((status.delivered, status.dropped), (3, 7));
        assert_eq!(status.failing.as_deref(), Some("timed out"));
        assert_eq!(outlet.delivered(1), Some((7, "timed out".to_owned())));
        assert_eq!(outlet.status().failing, None);
        assert_eq!(outlet.delivered(1), None);
        assert!(outlet.dropped(1, "connection refused"));
    }
}
