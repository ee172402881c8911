//! [`HealthMonitor`]: samples on its own thread, serves the latest sample.
//!
//! A plain OS thread rather than a tokio task with `spawn_blocking`: the
//! work is a blocking `/proc` read every few seconds for the whole life of
//! the kernel, which would pin a blocking-pool thread anyway, and a thread
//! that sleeps on a channel can be woken for a new interval and ends by
//! itself when the monitor is dropped.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};

use super::classify::classify;
use super::sampler::Sampler;
use super::{HealthReport, HealthThresholds, Sample, ServiceHealth};
use skillkernel_stdx::lock;

/// What the monitor thread and the readers share.
struct Latest {
    sample: Mutex<Sample>,
    thresholds: Mutex<HealthThresholds>,
}

/// Samples the process and host in the background; cheap to read.
pub struct HealthMonitor {
    latest: Arc<Latest>,
    /// Wakes the thread when the interval changes; dropping it (with the
    /// monitor) ends the thread.
    wake: mpsc::Sender<()>,
}

/// Small: the thread only parses a few short `/proc` files.
const STACK_BYTES: usize = 256 * 1024;

impl HealthMonitor {
    /// Takes a first sample here — so a status asked for right after the
    /// start already has figures — then samples every
    /// `thresholds.interval()` on a thread of its own. `state_dir`'s file
    /// system is the one whose free space is watched.
    pub fn start(
        thresholds: HealthThresholds,
        state_dir: Option<std::path::PathBuf>,
    ) -> HealthMonitor {
        let mut sampler = Sampler::new(state_dir);
        let latest = Arc::new(Latest {
            sample: Mutex::new(sampler.sample()),
            thresholds: Mutex::new(thresholds),
        });
        let (wake, woken) = mpsc::channel();
        let shared = latest.clone();
        let spawned = std::thread::Builder::new()
            .name("skillkernel-health".into())
            .stack_size(STACK_BYTES)
            .spawn(move || sample_until_dropped(sampler, &shared, &woken));
        if let Err(e) = spawned {
            // Not fatal: the kernel serves on, and the report keeps showing
            // the start-up sample (its `sampled_at` tells how old it is).
            tracing::error!(error = %e, "cannot start the health monitor thread");
        }
        HealthMonitor { latest, wake }
    }

    /// The latest sample with `service` (how the kernel's work went
    /// lately, which the kernel gathers), classified against the current
    /// thresholds.
    pub fn report(&self, service: ServiceHealth) -> HealthReport {
        let sample = lock(&self.latest.sample).clone();
        let thresholds = lock(&self.latest.thresholds).clone();
        let assessment = classify(&sample, &service, &thresholds);
        HealthReport {
            status: assessment.status,
            reasons: assessment.reasons,
            sample,
            service,
            thresholds,
        }
    }

    /// Replaces the thresholds (a config reload); the next report uses
    /// them, and a new interval takes effect at once.
    pub fn set_thresholds(&self, thresholds: HealthThresholds) {
        let interval_changed = {
            let mut current = lock(&self.latest.thresholds);
            let changed = current.interval() != thresholds.interval();
            *current = thresholds;
            changed
        };
        if interval_changed {
            // The thread is gone only if it never started; nothing to wake.
            let _ = self.wake.send(());
        }
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> HealthThresholds {
        lock(&self.latest.thresholds).clone()
    }
}

fn sample_until_dropped(mut sampler: Sampler, latest: &Latest, woken: &mpsc::Receiver<()>) {
    loop {
        let interval = lock(&latest.thresholds).interval();
        match woken.recv_timeout(interval) {
            // A new interval: wait again with it.
            Ok(()) => continue,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let sample = sampler.sample();
        *lock(&latest.sample) = sample;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::health::HealthStatus;

    fn fast() -> HealthThresholds {
        HealthThresholds {
            interval_secs: 0.2,
            ..HealthThresholds::default()
        }
    }

    /// Host-wide checks off: a loaded test machine must not decide these.
    fn process_only() -> HealthThresholds {
        HealthThresholds {
            available_memory_degraded_percent: 0.0,
            available_memory_unhealthy_percent: 0.0,
            load_degraded_per_core: 0.0,
            ..HealthThresholds::default()
        }
    }

    #[test]
    fn the_first_report_is_available_at_once_with_this_process_rss() {
        let monitor = HealthMonitor::start(process_only(), None);
        let report = monitor.report(ServiceHealth::default());
        assert!(report.sample.rss_bytes > 0);
        assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
    }

    #[test]
    fn new_samples_arrive_at_the_interval() {
        let monitor = HealthMonitor::start(fast(), None);
        let first = monitor.report(ServiceHealth::default()).sample.sampled_at;
        let deadline = Instant::now() + Duration::from_secs(5);
        while monitor.report(ServiceHealth::default()).sample.sampled_at == first {
            assert!(Instant::now() < deadline, "no new sample within 5 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn changed_thresholds_apply_to_the_next_report() {
        let monitor = HealthMonitor::start(process_only(), None);
        monitor.set_thresholds(HealthThresholds {
            rss_degraded_mib: 1,
            ..process_only()
        });
        let report = monitor.report(ServiceHealth::default());
        assert_eq!(report.status, HealthStatus::Degraded);
        assert!(
            report.reasons[0].starts_with("rss "),
            "{:?}",
            report.reasons
        );
        assert_eq!(report.thresholds.rss_degraded_mib, 1);
    }

    #[test]
    fn a_shorter_interval_wakes_a_thread_waiting_on_a_long_one() {
        let monitor = HealthMonitor::start(
            HealthThresholds {
                interval_secs: 3600.0,
                ..HealthThresholds::default()
            },
            None,
        );
        let first = monitor.report(ServiceHealth::default()).sample.sampled_at;
        // Let the thread start its hour-long wait first: read after the
        // change, the short interval would be picked up without a wake-up.
        std::thread::sleep(Duration::from_millis(300));
        monitor.set_thresholds(fast());
        let deadline = Instant::now() + Duration::from_secs(5);
        while monitor.report(ServiceHealth::default()).sample.sampled_at == first {
            assert!(
                Instant::now() < deadline,
                "the hour-long wait was not cut short"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
