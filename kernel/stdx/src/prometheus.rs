//! The Prometheus text exposition format (0.0.4) and an atomic histogram
//! to feed it: formatting and counting only, no I/O.
//!
//! [`Exposition`] writes each family's `# HELP` and `# TYPE` once, then
//! its samples; label values are escaped (backslash, double quote,
//! newline). A [`Histogram`] is a few relaxed atomic adds per
//! observation, for code on every request's path.

use std::borrow::Cow;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page of the exposition format being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Starts the family `name`; its samples follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample of the current family.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// The `_bucket`, `_sum` and `_count` samples of histogram `name`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramValues) {
        for (le, count) in &h.buckets {
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le.to_string()));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", h.sum);
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", h.count);
    }

    /// Families written elsewhere in this format, appended as they are.
    pub fn append(&mut self, text: &str) {
        self.out.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            self.out.push('\n');
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    out.push('}');
}

/// A label value as the format wants it.
pub fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Observations counted into fixed buckets (upper bounds in seconds, or
/// in whatever unit the caller observes).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then `+Inf`; not cumulative.
    buckets: Vec<AtomicU64>,
    /// The sum, in millionths of the unit.
    sum_micros: AtomicU64,
}

/// A histogram as it stood: cumulative counts per upper bound.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValues {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let value = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        let i = self.bounds.partition_point(|b| *b < value);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).round() as u64, Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Sets the counts to `values` (a histogram as it stood, saved and
    /// read back); refused (false) when its bounds are not these.
    pub fn restore(&self, values: &HistogramValues) -> bool {
        let same = values.buckets.len() == self.bounds.len()
            && values
                .buckets
                .iter()
                .zip(self.bounds)
                .all(|((le, _), b)| le == b);
        if !same {
            return false;
        }
        let mut previous = 0;
        for ((_, cumulative), bucket) in values.buckets.iter().zip(&self.buckets) {
            bucket.store(cumulative.saturating_sub(previous), Relaxed);
            previous = previous.max(*cumulative);
        }
        self.buckets[self.bounds.len()].store(values.count.saturating_sub(previous), Relaxed);
        let sum = if values.sum.is_finite() {
            values.sum.max(0.0)
        } else {
            0.0
        };
        self.sum_micros.store((sum * 1e6).round() as u64, Relaxed);
        true
    }

    pub fn values(&self) -> HistogramValues {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                cumulative += n.load(Relaxed);
                (*le, cumulative)
            })
            .collect();
        // The count from the buckets themselves (the last is `+Inf`), so
        // that an observation landing meanwhile cannot make a bucket
        // exceed the count.
        let count = cumulative + self.buckets[self.bounds.len()].load(Relaxed);
        HistogramValues {
            buckets,
            count,
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_restored_from_its_values_gives_them_back() {
        static BOUNDS: &[f64] = &[0.1, 1.0];
        let h = Histogram::new(BOUNDS);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let again = Histogram::new(BOUNDS);
        assert!(again.restore(&h.values()));
        assert_eq!(again.values(), h.values());
        static OTHER: &[f64] = &[0.2, 1.0];
        assert!(!Histogram::new(OTHER).restore(&h.values()));
    }

    #[test]
    fn families_samples_and_histograms_are_written_as_the_format_wants() {
        static BOUNDS: &[f64] = &[0.1, 1.0];
        let h = Histogram::new(BOUNDS);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let mut page = Exposition::new();
        page.family("x_total", "Things.", Kind::Counter).sample(
            "x_total",
            &[("name", "a\"b\\c\nd")],
            3,
        );
        page.family("t_seconds", "Times.", Kind::Histogram)
            .histogram("t_seconds", &[("op", "go")], &h.values());
        page.append("# HELP y Other.\n# TYPE y gauge\ny 1");
        let text = page.finish();
        assert_eq!(
            text,
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{name=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP t_seconds Times.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{op=\"go\",le=\"0.1\"} 1\n\
             t_seconds_bucket{op=\"go\",le=\"1\"} 2\n\
             t_seconds_bucket{op=\"go\",le=\"+Inf\"} 3\n\
             t_seconds_sum{op=\"go\"} 7.55\n\
             t_seconds_count{op=\"go\"} 3\n\
             # HELP y Other.\n# TYPE y gauge\ny 1\n"
        );
    }
}
