//! The health monitor: how much this kernel process and its host use, and
//! whether that is `healthy`, `degraded` or `unhealthy`.
//!
//! A [`HealthMonitor`] samples on its own thread every `interval_secs`
//! (process RSS and CPU, system memory, load average, uptime — through
//! `sysinfo`, refreshing only this process and the memory figures), and
//! keeps the latest [`Sample`]. Reading it ([`HealthMonitor::report`]) is a
//! lock and a clone; the classification against [`HealthThresholds`] runs
//! at read time, so thresholds changed by a config reload
//! ([`HealthMonitor::set_thresholds`]) apply to the very next read.
//!
//! `%status`, `status_request` and `skillctl status` all show the
//! [`HealthReport`] through [`crate::status`].

mod classify;
mod monitor;
mod sampler;
pub mod units;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use classify::{classify, Assessment, HealthStatus};
pub use monitor::HealthMonitor;

/// Where the health monitor's thresholds lie and how often it samples.
/// It is also the daemon's `[health]` config section, read as is (and
/// changed on reload); a threshold of 0 turns its check off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthThresholds {
    /// Seconds between samples (kept between 0.2 s and one hour).
    pub interval_secs: f64,
    /// Process resident memory above which the kernel is degraded.
    pub rss_degraded_mib: u64,
    /// Process resident memory above which the kernel is unhealthy.
    pub rss_unhealthy_mib: u64,
    /// System memory available below this share of the total: degraded.
    pub available_memory_degraded_percent: f64,
    /// System memory available below this share of the total: unhealthy.
    pub available_memory_unhealthy_percent: f64,
    /// One-minute load average per core above which the host is degraded.
    pub load_degraded_per_core: f64,
    /// The window the service checks below look back over.
    pub recent_window_secs: u64,
    /// Share of recent cells and skill runs that failed above which the
    /// kernel is degraded (judged from [`MIN_RECENT_RUNS`] runs on).
    pub failures_degraded_percent: f64,
    /// The same share, for unhealthy (off by default: a notebook's own
    /// mistakes fail cells too).
    pub failures_unhealthy_percent: f64,
    /// 99th percentile latency of recent requests answered at once (not
    /// cells, skill runs or pulls) above which the kernel is degraded
    /// (judged from [`MIN_RECENT_REQUESTS`] requests on).
    pub request_p99_degraded_ms: u64,
    /// Degraded while a skill's circuit breaker is open.
    pub open_breaker_degrades: bool,
    /// Degraded while a configured backend cannot be reached.
    pub unreachable_backend_degrades: bool,
    /// Free space on the state directory's file system below which the
    /// kernel is degraded.
    pub state_free_degraded_mib: u64,
    /// The same, for unhealthy.
    pub state_free_unhealthy_mib: u64,
}

/// Runs needed in the window before the failure share is judged.
pub const MIN_RECENT_RUNS: u32 = 20;
/// Requests needed in the window before their latency is judged.
pub const MIN_RECENT_REQUESTS: u32 = 100;

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            interval_secs: 5.0,
            rss_degraded_mib: 4096,
            rss_unhealthy_mib: 12288,
            available_memory_degraded_percent: 10.0,
            available_memory_unhealthy_percent: 3.0,
            load_degraded_per_core: 4.0,
            recent_window_secs: 300,
            failures_degraded_percent: 50.0,
            failures_unhealthy_percent: 0.0,
            request_p99_degraded_ms: 1000,
            open_breaker_degrades: true,
            unreachable_backend_degrades: true,
            state_free_degraded_mib: 256,
            state_free_unhealthy_mib: 32,
        }
    }
}

/// sysinfo needs this much time between two refreshes for a meaningful
/// CPU figure; a shorter interval only costs wake-ups.
const MIN_INTERVAL: Duration = Duration::from_millis(200);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

impl HealthThresholds {
    /// The sampling interval, kept within bounds: a zero, negative or NaN
    /// `interval_secs` from a config file must not spin the thread or
    /// panic in `Duration::from_secs_f64`.
    pub fn interval(&self) -> Duration {
        Duration::try_from_secs_f64(self.interval_secs)
            .unwrap_or(MIN_INTERVAL)
            .clamp(MIN_INTERVAL, MAX_INTERVAL)
    }

    /// The window of the service checks (at least a second).
    pub fn recent_window(&self) -> Duration {
        Duration::from_secs(self.recent_window_secs.max(1))
    }
}

/// How the kernel's work went lately (the health report's `service`).
pub use skillkernel_protocol::content::ServiceHealth;

/// One reading of the process and its host (the status reply's health
/// figures).
pub use skillkernel_protocol::content::HealthSample as Sample;

/// The latest sample with its verdict, as the status report shows it.
pub type HealthReport = skillkernel_protocol::content::HealthReport<HealthThresholds>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_interval_is_kept_within_bounds() {
        let with = |secs| HealthThresholds {
            interval_secs: secs,
            ..HealthThresholds::default()
        };
        assert_eq!(with(5.0).interval(), Duration::from_secs(5));
        assert_eq!(with(0.0).interval(), MIN_INTERVAL);
        assert_eq!(with(-3.0).interval(), MIN_INTERVAL);
        assert_eq!(with(f64::NAN).interval(), MIN_INTERVAL);
        assert_eq!(with(1e12).interval(), MAX_INTERVAL);
    }
}
