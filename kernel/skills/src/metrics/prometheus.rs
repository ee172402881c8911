//! The Prometheus text exposition format (0.0.4) of skill metrics, for
//! `skillctl skill metrics --prometheus` and a scrape endpoint.
//!
//! Each family gets `# HELP` and `# TYPE`; counters end in `_total`;
//! histograms have cumulative `_bucket{le=…}` lines ending with
//! `le="+Inf"`, then `_sum` and `_count`. Label values are escaped
//! (backslash, double quote, newline). Only formatting: no state.

use std::fmt::Write;

use skillkernel_stdx::prometheus::escape;

use super::{HistogramSnapshot, MetricsSnapshot, SkillSnapshot};

const PREFIX: &str = "skillkernel_skill";

/// A family: its name after the prefix, its help text, and its value.
type Counter = (&'static str, &'static str, fn(&SkillSnapshot) -> u64);
type Histogram = (
    &'static str,
    &'static str,
    fn(&SkillSnapshot) -> &HistogramSnapshot,
);

pub(super) fn render(snapshot: &MetricsSnapshot) -> String {
    let mut out = String::new();
    let skills: Vec<(&String, &SkillSnapshot)> = snapshot.skills.iter().collect();
    let counters: [Counter; 3] = [
        (
            "executions",
            "Skill executions, failed ones included.",
            |s| s.executions,
        ),
        (
            "retries",
            "Model calls retried after a transient failure.",
            |s| s.retries,
        ),
        (
            "cache_hits",
            "Model calls answered from the response cache.",
            |s| s.cache_hits,
        ),
    ];
    for (name, help, value) in counters {
        header(&mut out, &format!("{name}_total"), help, "counter");
        for (skill, s) in &skills {
            let _ = writeln!(
                out,
                "{PREFIX}_{name}_total{{skill=\"{}\"}} {}",
                escape(skill),
                value(s)
            );
        }
    }
    header(
        &mut out,
        "errors_total",
        "Failed skill executions by error code.",
        "counter",
    );
    for (skill, s) in &skills {
        for (code, n) in &s.errors {
            let _ = writeln!(
                out,
                "{PREFIX}_errors_total{{skill=\"{}\",code=\"{}\"}} {n}",
                escape(skill),
                escape(code)
            );
        }
    }
    header(
        &mut out,
        "tokens_total",
        "Tokens of the skill's model calls, by kind.",
        "counter",
    );
    for (skill, s) in &skills {
        for (kind, n) in [
            ("prompt", s.prompt_tokens),
            ("completion", s.completion_tokens),
        ] {
            let _ = writeln!(
                out,
                "{PREFIX}_tokens_total{{skill=\"{}\",kind=\"{kind}\"}} {n}",
                escape(skill)
            );
        }
    }
    let histograms: [Histogram; 2] = [
        ("load_seconds", "Time to load the skill.", |s| &s.load),
        (
            "execution_seconds",
            "Time a skill execution took, retries included.",
            |s| &s.execution,
        ),
    ];
    for (name, help, histogram) in histograms {
        header(&mut out, name, help, "histogram");
        for (skill, s) in &skills {
            write_histogram(&mut out, name, &escape(skill), histogram(s));
        }
    }
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
}

fn write_histogram(out: &mut String, name: &str, skill: &str, h: &HistogramSnapshot) {
    for b in &h.buckets {
        let _ = writeln!(
            out,
            "{PREFIX}_{name}_bucket{{skill=\"{skill}\",le=\"{}\"}} {}",
            b.le, b.count
        );
    }
    let _ = writeln!(
        out,
        "{PREFIX}_{name}_bucket{{skill=\"{skill}\",le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(
        out,
        "{PREFIX}_{name}_sum{{skill=\"{skill}\"}} {}",
        h.sum_seconds
    );
    let _ = writeln!(
        out,
        "{PREFIX}_{name}_count{{skill=\"{skill}\"}} {}",
        h.count
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::metrics::SkillMetrics;
    use crate::ErrorCode;
    use skillkernel_providers::GenerationStats;

    fn stats(cached: bool) -> GenerationStats {
        GenerationStats {
            prompt_tokens: 7,
            completion_tokens: 3,
            prompt_ms: 0.0,
            first_token_ms: None,
            total_ms: 0.0,
            finish_reason: "stop".into(),
            cached,
            ..Default::default()
        }
    }

    #[test]
    fn the_exposition_is_valid_line_by_line() {
        let m = SkillMetrics::new();
        m.record_load("summarize", Duration::from_micros(300));
        m.record_execution("summarize", Duration::from_millis(40), None);
        m.record_execution(
            "summarize",
            Duration::from_secs(2),
            Some(ErrorCode::ProviderUnavailable),
        );
        m.record_generation("summarize", &stats(false));
        m.record_generation("summarize", &stats(true));
        m.record_retry("summarize");
        m.record_execution("odd\"na\\me\n", Duration::from_millis(1), None);
        let text = m.render_prometheus();

        let sample = regex::Regex::new(
            r#"^skillkernel_skill_[a-z_]+(\{([a-z_]+="([^"\\\n]|\\["\\n])*",?)+\})? [0-9.e+-]+$"#,
        )
        .unwrap();
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "histogram"].contains(&kind), "{line}");
                assert!(kind != "counter" || name.ends_with("_total"), "{line}");
                typed.push(name.to_owned());
            } else if line.starts_with("# HELP ") {
                assert!(line.split(' ').count() > 3, "{line}");
            } else {
                assert!(sample.is_match(line), "not a sample line: {line:?}");
                let family = typed.last().expect("a sample before any # TYPE");
                assert!(line.starts_with(family.as_str()), "{line} outside {family}");
            }
        }
        for expected in [
            "skillkernel_skill_executions_total{skill=\"summarize\"} 2",
            "skillkernel_skill_errors_total{skill=\"summarize\",code=\"PROVIDER_UNAVAILABLE\"} 1",
            "skillkernel_skill_cache_hits_total{skill=\"summarize\"} 1",
            "skillkernel_skill_retries_total{skill=\"summarize\"} 1",
            "skillkernel_skill_tokens_total{skill=\"summarize\",kind=\"prompt\"} 14",
            "skillkernel_skill_execution_seconds_bucket{skill=\"summarize\",le=\"0.05\"} 1",
            "skillkernel_skill_execution_seconds_bucket{skill=\"summarize\",le=\"2.5\"} 2",
            "skillkernel_skill_execution_seconds_bucket{skill=\"summarize\",le=\"+Inf\"} 2",
            "skillkernel_skill_execution_seconds_sum{skill=\"summarize\"} 2.04",
            "skillkernel_skill_execution_seconds_count{skill=\"summarize\"} 2",
            "skillkernel_skill_load_seconds_bucket{skill=\"summarize\",le=\"0.0005\"} 1",
            "skillkernel_skill_executions_total{skill=\"odd\\\"na\\\\me\\n\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "missing {expected}\n{text}"
            );
        }
        // Buckets are cumulative and end at the count.
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| {
                l.starts_with("skillkernel_skill_execution_seconds_bucket{skill=\"summarize\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets.last(), Some(&2));
    }
}
