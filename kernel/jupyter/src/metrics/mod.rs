//! The kernel's own counters for the metrics endpoint: requests by
//! message type with their latency, and cells by kind and outcome.
//! Recording is a few relaxed atomic adds on the request's path;
//! [`crate::metrics_page`] writes these with every other figure the
//! daemon keeps in the Prometheus text format.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skillkernel_protocol::RequestType;
use skillkernel_stdx::prometheus::{Histogram, HistogramValues};

/// Upper bounds (seconds) of the request latency buckets: a
/// `kernel_info_request` takes well under a millisecond, a cell minutes.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// What a cell was, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Empty,
    Prompt,
    /// `%magic` and `!command` lines.
    Lines,
    CellMagic,
    Exit,
    /// It did not parse.
    Invalid,
    /// Aborted after an earlier cell failed: never parsed.
    NotRun,
}

impl CellKind {
    pub const ALL: [CellKind; 7] = [
        CellKind::Empty,
        CellKind::Prompt,
        CellKind::Lines,
        CellKind::CellMagic,
        CellKind::Exit,
        CellKind::Invalid,
        CellKind::NotRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CellKind::Empty => "empty",
            CellKind::Prompt => "prompt",
            CellKind::Lines => "lines",
            CellKind::CellMagic => "cell_magic",
            CellKind::Exit => "exit",
            CellKind::Invalid => "invalid",
            CellKind::NotRun => "not_run",
        }
    }
}

/// How a cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellOutcome {
    Ok,
    Error,
    Interrupted,
    Aborted,
}

impl CellOutcome {
    pub const ALL: [CellOutcome; 4] = [
        CellOutcome::Ok,
        CellOutcome::Error,
        CellOutcome::Interrupted,
        CellOutcome::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CellOutcome::Ok => "ok",
            CellOutcome::Error => "error",
            CellOutcome::Interrupted => "interrupted",
            CellOutcome::Aborted => "aborted",
        }
    }
}

/// Runs (cells, skill runs) remembered for the health checks.
const RECENT_RUNS: usize = 200;
/// Request latencies remembered for the health checks.
const RECENT_REQUESTS: usize = 1000;

/// The kernel's counters.
pub struct KernelMetrics {
    /// One per [`RequestType::ALL`], then one for unknown types.
    requests: Vec<Histogram>,
    cells: [[AtomicU64; CellOutcome::ALL.len()]; CellKind::ALL.len()],
    recent: Mutex<Recent>,
}

/// The newest runs and requests, for the health checks' window.
#[derive(Default)]
struct Recent {
    /// When each ended, and whether it failed.
    runs: VecDeque<(Instant, bool)>,
    /// When each request other than `execute_request` was answered, and
    /// how long it took.
    requests: VecDeque<(Instant, Duration)>,
}

/// What the recent window holds (see [`KernelMetrics::recent`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentFigures {
    pub runs: u32,
    pub failures: u32,
    pub requests: u32,
    pub request_p99: Option<Duration>,
}

impl Default for KernelMetrics {
    fn default() -> Self {
        KernelMetrics {
            requests: (0..=RequestType::ALL.len())
                .map(|_| Histogram::new(REQUEST_BUCKETS))
                .collect(),
            cells: Default::default(),
            recent: Mutex::default(),
        }
    }
}

impl KernelMetrics {
    /// A request of `msg_type` handled in `took` (reply sent). Only
    /// `interactive` ones — answered at once, not work like a cell, a
    /// skill run or a model pull — count toward the latency health check.
    pub fn request(&self, msg_type: &str, took: Duration, interactive: bool) {
        let i = RequestType::parse(msg_type)
            .and_then(|r| RequestType::ALL.iter().position(|a| *a == r))
            .unwrap_or(RequestType::ALL.len());
        self.requests[i].observe_duration(took);
        // Work's time is its own, not the kernel's responsiveness.
        if interactive {
            let mut recent = skillkernel_stdx::lock(&self.recent);
            if recent.requests.len() == RECENT_REQUESTS {
                recent.requests.pop_front();
            }
            recent.requests.push_back((Instant::now(), took));
        }
    }

    pub fn cell(&self, kind: CellKind, outcome: CellOutcome) {
        self.cells[kind as usize][outcome as usize].fetch_add(1, Relaxed);
        match outcome {
            CellOutcome::Ok => self.run_ended(false),
            // A cell that does not parse is the notebook's typo, not the
            // kernel failing.
            CellOutcome::Error if kind == CellKind::Invalid => {}
            CellOutcome::Error => self.run_ended(true),
            // Stopped by the user, or never run: neither worked nor failed.
            CellOutcome::Interrupted | CellOutcome::Aborted => {}
        }
    }

    /// A cell or skill run ended; `failed` when it ended in an error.
    pub fn run_ended(&self, failed: bool) {
        let mut recent = skillkernel_stdx::lock(&self.recent);
        if recent.runs.len() == RECENT_RUNS {
            recent.runs.pop_front();
        }
        recent.runs.push_back((Instant::now(), failed));
    }

    /// Runs and requests that ended within `window`: how many, how many
    /// runs failed, and the requests' 99th percentile latency.
    pub fn recent(&self, window: Duration) -> RecentFigures {
        let recent = skillkernel_stdx::lock(&self.recent);
        let since = Instant::now().checked_sub(window);
        let within = |at: &Instant| since.is_none_or(|s| *at >= s);
        let runs: Vec<bool> = recent
            .runs
            .iter()
            .filter(|(at, _)| within(at))
            .map(|(_, failed)| *failed)
            .collect();
        let mut took: Vec<Duration> = recent
            .requests
            .iter()
            .filter(|(at, _)| within(at))
            .map(|(_, took)| *took)
            .collect();
        took.sort_unstable();
        let request_p99 = (!took.is_empty())
            .then(|| took[((took.len() as f64 * 0.99).ceil() as usize).clamp(1, took.len()) - 1]);
        RecentFigures {
            runs: runs.len() as u32,
            failures: runs.iter().filter(|f| **f).count() as u32,
            requests: took.len() as u32,
            request_p99,
        }
    }

    /// Each request type seen (unknown ones as `other`) with its latency
    /// histogram.
    pub fn requests(&self) -> Vec<(&'static str, HistogramValues)> {
        RequestType::ALL
            .iter()
            .map(|r| r.request())
            .chain(["other"])
            .zip(&self.requests)
            .map(|(name, h)| (name, h.values()))
            .filter(|(_, v)| v.count > 0)
            .collect()
    }

    /// Each kind and outcome of cell seen, with its count.
    pub fn cells(&self) -> Vec<(CellKind, CellOutcome, u64)> {
        let mut seen = Vec::new();
        for kind in CellKind::ALL {
            for outcome in CellOutcome::ALL {
                let n = self.cells[kind as usize][outcome as usize].load(Relaxed);
                if n > 0 {
                    seen.push((kind, outcome, n));
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_cells_land_in_their_own_series() {
        let m = KernelMetrics::default();
        m.request("execute_request", Duration::from_millis(3), false);
        m.request("made_up_request", Duration::from_millis(1), true);
        m.cell(CellKind::Prompt, CellOutcome::Error);
        let execute = RequestType::ALL
            .iter()
            .position(|r| *r == RequestType::Execute)
            .unwrap();
        assert_eq!(m.requests[execute].values().count, 1);
        assert_eq!(m.requests[RequestType::ALL.len()].values().count, 1);
        assert_eq!(
            m.cells[CellKind::Prompt as usize][CellOutcome::Error as usize].load(Relaxed),
            1
        );
    }
}
