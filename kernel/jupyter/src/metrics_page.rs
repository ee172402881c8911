//! Everything the daemon counts, as one page of the Prometheus text
//! format. Names follow Prometheus conventions: a `skillkernel_` prefix,
//! units in the name (`_seconds`, `_bytes`), counters ending in `_total`,
//! and label values from bounded sets (message types, cell kinds, the
//! configured backends and models, sandbox endings).

use skillkernel_protocol::content::HealthStatus;
use skillkernel_providers::registry::CallOutcome;
use skillkernel_stdx::outlet::OutletStatus;
use skillkernel_stdx::prometheus::{Exposition, Kind};

use crate::session::Shared;

/// The metrics page.
pub fn render(shared: &Shared) -> String {
    let mut page = Exposition::new();
    process(&mut page, shared);
    requests(&mut page, shared);
    iopub(&mut page, shared);
    telemetry(&mut page, shared);
    health(&mut page, shared);
    models(&mut page, shared);
    sandbox(&mut page, shared);
    if let Some(skills) = shared.skills() {
        page.family(
            "skillkernel_skills_loaded",
            "Skills the registry holds.",
            Kind::Gauge,
        )
        .sample(
            "skillkernel_skills_loaded",
            &[],
            skills.registry.list().len(),
        );
        page.append(&skills.metrics().render_prometheus());
    }
    page.finish()
}

fn process(page: &mut Exposition, shared: &Shared) {
    page.family(
        "skillkernel_build_info",
        "The running build; the value is always 1.",
        Kind::Gauge,
    )
    .sample(
        "skillkernel_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    page.family(
        "skillkernel_start_time_seconds",
        "When the kernel started, in seconds since the Unix epoch.",
        Kind::Gauge,
    )
    .sample(
        "skillkernel_start_time_seconds",
        &[],
        shared.started_at.timestamp_millis() as f64 / 1e3,
    );
}

fn requests(page: &mut Exposition, shared: &Shared) {
    let types = shared.metrics.requests();
    page.family(
        "skillkernel_requests_total",
        "Shell and control requests handled, by message type.",
        Kind::Counter,
    );
    for (name, v) in &types {
        page.sample("skillkernel_requests_total", &[("msg_type", name)], v.count);
    }
    page.family(
        "skillkernel_request_duration_seconds",
        "Time from taking a request to sending its reply.",
        Kind::Histogram,
    );
    for (name, v) in &types {
        page.histogram(
            "skillkernel_request_duration_seconds",
            &[("msg_type", name)],
            v,
        );
    }
    page.family(
        "skillkernel_cells_total",
        "Cells run, by kind and outcome.",
        Kind::Counter,
    );
    for (kind, outcome, n) in shared.metrics.cells() {
        page.sample(
            "skillkernel_cells_total",
            &[("kind", kind.as_str()), ("outcome", outcome.as_str())],
            n,
        );
    }
}

fn iopub(page: &mut Exposition, shared: &Shared) {
    let stats = shared.iopub.stats();
    page.family(
        "skillkernel_iopub_subscribers",
        "IOPub subscribers connected.",
        Kind::Gauge,
    )
    .sample("skillkernel_iopub_subscribers", &[], stats.subscribers);
    page.family(
        "skillkernel_iopub_lagging_subscribers",
        "IOPub subscribers whose queue is over half full.",
        Kind::Gauge,
    )
    .sample("skillkernel_iopub_lagging_subscribers", &[], stats.lagging);
    page.family(
        "skillkernel_iopub_queued_bytes",
        "Bytes waiting in IOPub subscribers' queues.",
        Kind::Gauge,
    )
    .sample("skillkernel_iopub_queued_bytes", &[], stats.queued_bytes);
    page.family(
        "skillkernel_iopub_messages_dropped_total",
        "IOPub messages dropped: for a subscriber that fell behind, or held for a first subscriber that never came.",
        Kind::Counter,
    )
    .sample(
        "skillkernel_iopub_messages_dropped_total",
        &[("reason", "subscriber_behind")],
        stats.dropped,
    )
    .sample(
        "skillkernel_iopub_messages_dropped_total",
        &[("reason", "before_first_subscriber")],
        stats.dropped_before_subscriber,
    );
}

/// Trace export and log file: what got out and what was dropped.
fn telemetry(page: &mut Exposition, shared: &Shared) {
    type Figure = fn(&OutletStatus) -> u64;
    let families: [(&str, &str, Kind, Figure); 3] = [
        (
            "skillkernel_telemetry_delivered_total",
            "Telemetry that got out: spans exported, log lines written.",
            Kind::Counter,
            |s| s.delivered,
        ),
        (
            "skillkernel_telemetry_dropped_total",
            "Telemetry dropped rather than waited for: a collector down or slow, a full disk.",
            Kind::Counter,
            |s| s.dropped,
        ),
        (
            "skillkernel_telemetry_failing",
            "1 while an outlet is dropping telemetry.",
            Kind::Gauge,
            |s| u64::from(s.failing.is_some()),
        ),
    ];
    let outlets: Vec<OutletStatus> = shared.config.telemetry.iter().map(|o| o.status()).collect();
    if outlets.is_empty() {
        return;
    }
    for (name, help, kind, figure) in families {
        let family = page.family(name, help, kind);
        for outlet in &outlets {
            family.sample(name, &[("outlet", outlet.name)], figure(outlet));
        }
    }
}

fn health(page: &mut Exposition, shared: &Shared) {
    let report = crate::status::health_report(shared);
    page.family(
        "skillkernel_health_status",
        "The health classification: 1 for the current status, 0 for the others.",
        Kind::Gauge,
    );
    for status in [
        HealthStatus::Healthy,
        HealthStatus::Degraded,
        HealthStatus::Unhealthy,
    ] {
        page.sample(
            "skillkernel_health_status",
            &[("status", status.as_str())],
            u8::from(report.status == status),
        );
    }
    let s = &report.sample;
    page.family(
        "skillkernel_resident_memory_bytes",
        "Resident memory of the kernel process.",
        Kind::Gauge,
    )
    .sample("skillkernel_resident_memory_bytes", &[], s.rss_bytes);
    page.family(
        "skillkernel_cpu_usage_ratio",
        "CPU the kernel process used over the last health interval (1 = one core busy).",
        Kind::Gauge,
    )
    .sample("skillkernel_cpu_usage_ratio", &[], s.cpu_percent / 100.0);
    page.family(
        "skillkernel_system_memory_available_bytes",
        "Memory the host has available.",
        Kind::Gauge,
    )
    .sample(
        "skillkernel_system_memory_available_bytes",
        &[],
        s.system_memory_available_bytes,
    );
}

fn models(page: &mut Exposition, shared: &Shared) {
    let Some(models) = shared.models() else {
        return;
    };
    let figures = models.registry.calls().figures();
    page.family(
        "skillkernel_model_calls_total",
        "Model calls by backend, model and how they ended.",
        Kind::Counter,
    );
    for f in &figures {
        for (outcome, n) in CallOutcome::ALL.iter().zip(f.calls) {
            page.sample(
                "skillkernel_model_calls_total",
                &[
                    ("backend", &f.backend),
                    ("model", &f.model),
                    ("outcome", outcome.as_str()),
                ],
                n,
            );
        }
    }
    page.family(
        "skillkernel_model_tokens_total",
        "Tokens of model calls that finished, by kind.",
        Kind::Counter,
    );
    for f in &figures {
        for (kind, n) in [
            ("prompt", f.prompt_tokens),
            ("completion", f.completion_tokens),
        ] {
            page.sample(
                "skillkernel_model_tokens_total",
                &[("backend", &f.backend), ("model", &f.model), ("kind", kind)],
                n,
            );
        }
    }
    page.family(
        "skillkernel_model_decode_seconds_total",
        "Time from a call's first token to its last (completion tokens / this = tokens per second).",
        Kind::Counter,
    );
    for f in &figures {
        page.sample(
            "skillkernel_model_decode_seconds_total",
            &[("backend", &f.backend), ("model", &f.model)],
            f.decode_seconds,
        );
    }
    page.family(
        "skillkernel_model_time_to_first_token_seconds",
        "Time from a model call to its first token.",
        Kind::Histogram,
    );
    for f in &figures {
        page.histogram(
            "skillkernel_model_time_to_first_token_seconds",
            &[("backend", &f.backend), ("model", &f.model)],
            &f.first_token_seconds,
        );
    }
}

fn sandbox(page: &mut Exposition, shared: &Shared) {
    let Some(sandbox) = shared.sandbox() else {
        return;
    };
    let (endings, denials) = sandbox.run_counts();
    page.family(
        "skillkernel_sandbox_runs_total",
        "Sandboxed programs run, by how they ended.",
        Kind::Counter,
    );
    for (ending, n) in endings {
        page.sample("skillkernel_sandbox_runs_total", &[("ending", ending)], n);
    }
    page.family(
        "skillkernel_sandbox_denials_total",
        "Accesses the sandbox refused.",
        Kind::Counter,
    )
    .sample("skillkernel_sandbox_denials_total", &[], denials);
}
