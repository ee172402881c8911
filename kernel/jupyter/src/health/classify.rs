//! Thresholds → `healthy` / `degraded` / `unhealthy`, with the reasons.
//!
//! Pure functions of a [`Sample`], the recent [`ServiceHealth`] and
//! [`HealthThresholds`], so the
//! classification is tested with synthetic samples and re-run at every
//! read: a threshold changed by a reload applies at once, without waiting
//! for the next sample.

use super::units::{format_bytes, format_mib};
use super::{HealthThresholds, Sample, ServiceHealth, MIN_RECENT_REQUESTS, MIN_RECENT_RUNS};

/// How the kernel's process and host are doing: the `health.status` of
/// the status reply, defined with it in the protocol crate.
pub use skillkernel_protocol::content::HealthStatus;

/// The verdict on one sample: the worst level any check reached, and one
/// reason per check that was not healthy.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub status: HealthStatus,
    pub reasons: Vec<String>,
}

/// Classifies `sample` and `service` against `thresholds`. A threshold
/// of 0 turns its check off (a 0 MiB RSS limit would otherwise always
/// trip).
pub fn classify(
    sample: &Sample,
    service: &ServiceHealth,
    thresholds: &HealthThresholds,
) -> Assessment {
    let checks = [
        check_rss(sample, thresholds),
        check_available_memory(sample, thresholds),
        check_load(sample, thresholds),
        check_state_free(sample, thresholds),
        check_failures(service, thresholds),
        check_latency(service, thresholds),
        check_breakers(service, thresholds),
        check_backends(service, thresholds),
    ];
    let mut status = HealthStatus::Healthy;
    let mut reasons = Vec::new();
    for (level, reason) in checks.into_iter().flatten() {
        status = status.max(level);
        reasons.push(reason);
    }
    Assessment { status, reasons }
}

type Finding = Option<(HealthStatus, String)>;

/// The level a figure reaches: unhealthy past `unhealthy`, else degraded
/// past `degraded` (`crossed` says whether a limit is passed; a limit of 0
/// is off), with the limit it passed.
fn tier<T: Copy>(
    crossed: impl Fn(T) -> bool,
    unhealthy: T,
    degraded: T,
) -> Option<(HealthStatus, T)> {
    if crossed(unhealthy) {
        Some((HealthStatus::Unhealthy, unhealthy))
    } else if crossed(degraded) {
        Some((HealthStatus::Degraded, degraded))
    } else {
        None
    }
}

fn check_rss(sample: &Sample, t: &HealthThresholds) -> Finding {
    let over = |mib: u64| mib > 0 && sample.rss_bytes > mib.saturating_mul(1 << 20);
    let (level, limit) = tier(over, t.rss_unhealthy_mib, t.rss_degraded_mib)?;
    Some((
        level,
        format!(
            "rss {} > {}",
            format_bytes(sample.rss_bytes),
            format_mib(limit)
        ),
    ))
}

fn check_available_memory(sample: &Sample, t: &HealthThresholds) -> Finding {
    // Without a total (sysinfo could not read it) there is nothing to judge.
    let percent = sample.system_memory_available_percent()?;
    let under = |limit: f64| limit > 0.0 && percent < limit;
    let (level, limit) = tier(
        under,
        t.available_memory_unhealthy_percent,
        t.available_memory_degraded_percent,
    )?;
    Some((
        level,
        format!(
            "system memory available {percent:.1}% ({}) < {limit}%",
            format_bytes(sample.system_memory_available_bytes)
        ),
    ))
}

fn check_load(sample: &Sample, t: &HealthThresholds) -> Finding {
    let limit = t.load_degraded_per_core;
    let cores = sample.cpu_cores.max(1) as f64;
    let per_core = sample.load_average[0] / cores;
    if limit <= 0.0 || per_core <= limit {
        return None;
    }
    Some((
        HealthStatus::Degraded,
        format!(
            "load {:.2} over {} cores = {per_core:.2} per core > {limit}",
            sample.load_average[0], sample.cpu_cores
        ),
    ))
}

fn check_state_free(sample: &Sample, t: &HealthThresholds) -> Finding {
    let free = sample.state_dir_free_bytes?;
    let under = |mib: u64| mib > 0 && free < mib.saturating_mul(1 << 20);
    let (level, limit) = tier(under, t.state_free_unhealthy_mib, t.state_free_degraded_mib)?;
    Some((
        level,
        format!(
            "state dir free {} < {}",
            format_bytes(free),
            format_mib(limit)
        ),
    ))
}

fn check_failures(s: &ServiceHealth, t: &HealthThresholds) -> Finding {
    if s.recent_runs < MIN_RECENT_RUNS {
        return None;
    }
    let percent = f64::from(s.recent_failures) * 100.0 / f64::from(s.recent_runs);
    let over = |limit: f64| limit > 0.0 && percent > limit;
    let (level, limit) = tier(
        over,
        t.failures_unhealthy_percent,
        t.failures_degraded_percent,
    )?;
    Some((
        level,
        format!(
            "{} of the last {} runs failed ({percent:.0}% > {limit}%)",
            s.recent_failures, s.recent_runs
        ),
    ))
}

fn check_latency(s: &ServiceHealth, t: &HealthThresholds) -> Finding {
    let p99 = s.request_p99_ms?;
    let limit = t.request_p99_degraded_ms;
    if limit == 0 || s.recent_requests < MIN_RECENT_REQUESTS || p99 <= limit as f64 {
        return None;
    }
    Some((
        HealthStatus::Degraded,
        format!("request p99 {p99:.0} ms > {limit} ms"),
    ))
}

fn check_breakers(s: &ServiceHealth, t: &HealthThresholds) -> Finding {
    if !t.open_breaker_degrades || s.open_breakers.is_empty() {
        return None;
    }
    Some((
        HealthStatus::Degraded,
        format!("circuit breaker open: {}", s.open_breakers.join(", ")),
    ))
}

fn check_backends(s: &ServiceHealth, t: &HealthThresholds) -> Finding {
    if !t.unreachable_backend_degrades || s.unreachable_backends.is_empty() {
        return None;
    }
    Some((
        HealthStatus::Degraded,
        format!("unreachable: {}", s.unreachable_backends.join("; ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// A calm host: 100 MiB RSS, half of 16 GiB free, load 0.5 on 4 cores.
    fn calm() -> Sample {
        Sample {
            sampled_at: "2026-01-01T00:00:00Z".into(),
            rss_bytes: 100 * MIB,
            cpu_percent: 1.0,
            system_memory_total_bytes: 16 * GIB,
            system_memory_available_bytes: 8 * GIB,
            load_average: [0.5, 0.4, 0.3],
            cpu_cores: 4,
            system_uptime_secs: 3600,
            state_dir_free_bytes: Some(100 * GIB),
        }
    }

    #[test]
    fn a_calm_sample_is_healthy_without_reasons() {
        let a = classify(
            &calm(),
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Healthy);
        assert!(a.reasons.is_empty(), "{:?}", a.reasons);
    }

    #[test]
    fn rss_above_the_degraded_limit_degrades_with_the_figures_in_the_reason() {
        let sample = Sample {
            rss_bytes: 5 * GIB + GIB / 10,
            ..calm()
        };
        let a = classify(
            &sample,
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Degraded);
        assert_eq!(a.reasons, ["rss 5.1 GiB > 4 GiB"]);
    }

    #[test]
    fn rss_above_the_unhealthy_limit_is_unhealthy_and_named_once() {
        let sample = Sample {
            rss_bytes: 13 * GIB,
            ..calm()
        };
        let a = classify(
            &sample,
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Unhealthy);
        assert_eq!(a.reasons, ["rss 13.0 GiB > 12 GiB"]);
    }

    #[test]
    fn rss_exactly_at_the_limit_is_still_healthy() {
        let sample = Sample {
            rss_bytes: 4096 * MIB,
            ..calm()
        };
        let a = classify(
            &sample,
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Healthy);
    }

    #[test]
    fn low_available_memory_degrades_then_makes_unhealthy() {
        let low = Sample {
            system_memory_available_bytes: GIB, // 6.25 %
            ..calm()
        };
        let a = classify(
            &low,
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Degraded);
        assert_eq!(
            a.reasons,
            ["system memory available 6.2% (1.0 GiB) < 10%"],
            "{:?}",
            a.reasons
        );
        let critical = Sample {
            system_memory_available_bytes: 256 * MIB, // 1.6 %
            ..calm()
        };
        let a = classify(
            &critical,
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Unhealthy);
        assert!(a.reasons[0].ends_with("< 3%"), "{:?}", a.reasons);
    }

    #[test]
    fn load_per_core_above_the_limit_degrades_but_never_makes_unhealthy() {
        let busy = Sample {
            load_average: [40.0, 30.0, 20.0],
            ..calm()
        };
        let a = classify(
            &busy,
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Degraded);
        assert_eq!(a.reasons, ["load 40.00 over 4 cores = 10.00 per core > 4"]);
        // 15 on 4 cores is 3.75 per core: under the default 4.
        let fine = Sample {
            load_average: [15.0, 1.0, 1.0],
            ..calm()
        };
        assert_eq!(
            classify(
                &fine,
                &ServiceHealth::default(),
                &HealthThresholds::default()
            )
            .status,
            HealthStatus::Healthy
        );
    }

    #[test]
    fn every_failing_check_is_listed_and_the_worst_level_wins() {
        let bad = Sample {
            rss_bytes: 5 * GIB,
            system_memory_available_bytes: 100 * MIB,
            load_average: [99.0, 1.0, 1.0],
            ..calm()
        };
        let a = classify(
            &bad,
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Unhealthy);
        assert_eq!(a.reasons.len(), 3, "{:?}", a.reasons);
        assert!(a.reasons[0].starts_with("rss "));
        assert!(a.reasons[1].starts_with("system memory available "));
        assert!(a.reasons[2].starts_with("load "));
    }

    #[test]
    fn a_zero_threshold_turns_its_check_off() {
        let bad = Sample {
            rss_bytes: 50 * GIB,
            load_average: [99.0, 1.0, 1.0],
            ..calm()
        };
        let off = HealthThresholds {
            rss_degraded_mib: 0,
            rss_unhealthy_mib: 0,
            load_degraded_per_core: 0.0,
            ..HealthThresholds::default()
        };
        assert_eq!(
            classify(&bad, &ServiceHealth::default(), &off).status,
            HealthStatus::Healthy
        );
    }

    #[test]
    fn an_unknown_memory_total_skips_the_memory_check() {
        let unknown = Sample {
            system_memory_total_bytes: 0,
            system_memory_available_bytes: 0,
            ..calm()
        };
        let a = classify(
            &unknown,
            &ServiceHealth::default(),
            &HealthThresholds::default(),
        );
        assert_eq!(a.status, HealthStatus::Healthy, "{:?}", a.reasons);
    }

    #[test]
    fn a_one_mib_rss_limit_degrades_any_real_process() {
        // What the integration test's config relies on.
        let t = HealthThresholds {
            rss_degraded_mib: 1,
            ..HealthThresholds::default()
        };
        let sample = Sample {
            rss_bytes: 6 * MIB + MIB / 2,
            ..calm()
        };
        let a = classify(&sample, &ServiceHealth::default(), &t);
        assert_eq!(a.status, HealthStatus::Degraded);
        assert_eq!(a.reasons, ["rss 6.5 MiB > 1 MiB"]);
    }

    #[test]
    fn failures_latency_breakers_backends_and_disk_space_are_judged_too() {
        let t = HealthThresholds::default();
        let busy = ServiceHealth {
            recent_runs: 20,
            recent_failures: 15,
            recent_requests: 150,
            request_p99_ms: Some(2500.0),
            open_breakers: vec!["summarize".into()],
            unreachable_backends: vec!["openai (http://h:1: connection refused)".into()],
        };
        let a = classify(&calm(), &busy, &t);
        assert_eq!(a.status, HealthStatus::Degraded);
        assert_eq!(
            a.reasons,
            [
                "15 of the last 20 runs failed (75% > 50%)",
                "request p99 2500 ms > 1000 ms",
                "circuit breaker open: summarize",
                "unreachable: openai (http://h:1: connection refused)",
            ]
        );
        // Too few runs or requests to judge: no verdict on them.
        let few = ServiceHealth {
            recent_runs: 3,
            recent_failures: 3,
            recent_requests: 5,
            request_p99_ms: Some(9000.0),
            ..ServiceHealth::default()
        };
        assert_eq!(classify(&calm(), &few, &t).status, HealthStatus::Healthy);
        let mut full = calm();
        full.state_dir_free_bytes = Some(20 * MIB);
        let a = classify(&full, &ServiceHealth::default(), &t);
        assert_eq!(a.status, HealthStatus::Unhealthy);
        assert_eq!(a.reasons, ["state dir free 20.0 MiB < 32 MiB"]);
    }
}
