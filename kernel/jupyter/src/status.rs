//! The kernel's status report: who it is, how healthy it is, what its
//! session holds — one report served three ways: `%status` (as a table),
//! `status_request` → `status_reply` (see `docs/protocol.md`) and
//! `skillctl status`.
//!
//! The report's shape is the status reply's, defined in the protocol crate
//! ([`skillkernel_protocol::content::StatusReport`]); a new area
//! (operations, persistence …) adds a section there, and every way of
//! serving the report carries it.

use serde_json::{json, Value};
use skillkernel_protocol::content::{Reply, StatusRequest};
use skillkernel_protocol::PROTOCOL_VERSION;

use crate::health::{HealthReport, HealthThresholds, ServiceHealth};
use crate::session::Shared;

pub use skillkernel_protocol::content::{
    IopubStatus, KernelStatus, SessionStatus, TelemetryStatus,
};

/// Everything `status_reply` carries besides `status: "ok"`, with the
/// health thresholds as the kernel's `[health]` config.
pub type StatusReport = skillkernel_protocol::content::StatusReport<HealthThresholds>;

/// Reads the report now: the health monitor's latest sample and the
/// session state (one short lock).
pub fn collect(shared: &Shared) -> StatusReport {
    let kernel = KernelStatus {
        name: shared.config.kernel_name.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol_version: PROTOCOL_VERSION.to_owned(),
        pid: std::process::id(),
        session_id: shared.session_id.clone(),
        started_at: shared
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        uptime_secs: shared.started.elapsed().as_secs(),
    };
    let current_model = shared.current_model();
    let session = shared.with_state(|state| SessionStatus {
        execution_count: state.execution_count,
        history_session: state.history.session,
        history_entries: state.history.len(),
        variables: state.variables.len(),
        conversation_turns: state
            .conversation
            .iter()
            .filter(|m| m.role == "user")
            .count(),
        current_model,
    });
    StatusReport {
        kernel,
        health: health_report(shared),
        session,
        persistence: shared.persistence_status(),
        operations: shared.operations.list(),
        shutting_down: shared.exit_requested(),
        iopub: iopub_status(shared.iopub.stats()),
        telemetry: telemetry_status(shared),
    }
}

/// What each telemetry outlet delivered and dropped.
pub(crate) fn telemetry_status(shared: &Shared) -> Vec<TelemetryStatus> {
    shared
        .config
        .telemetry
        .iter()
        .map(|outlet| {
            let s = outlet.status();
            TelemetryStatus {
                name: s.name.to_owned(),
                target: s.target,
                delivered: s.delivered,
                dropped: s.dropped,
                failing: s.failing,
            }
        })
        .collect()
}

/// The health monitor's latest sample with how the kernel's work went
/// lately — failures, latency, open breakers, unreachable backends —
/// classified against `[health]`.
pub fn health_report(shared: &Shared) -> HealthReport {
    let window = shared.health.thresholds().recent_window();
    let recent = shared.metrics.recent(window);
    let open_breakers = shared
        .skills()
        .map(|skills| skills.executor.open_breakers())
        .unwrap_or_default();
    let unreachable_backends = shared
        .models()
        .map(|models| {
            models
                .registry
                .backends()
                .iter()
                .filter_map(|b| {
                    b.unreachable()
                        .map(|why| format!("{} ({why})", b.backend()))
                })
                .collect()
        })
        .unwrap_or_default();
    shared.health.report(ServiceHealth {
        recent_runs: recent.runs,
        recent_failures: recent.failures,
        recent_requests: recent.requests,
        request_p99_ms: recent.request_p99.map(|d| d.as_secs_f64() * 1e3),
        open_breakers,
        unreachable_backends,
    })
}

fn iopub_status(s: skillkernel_transport::IopubStats) -> IopubStatus {
    IopubStatus {
        subscribers: s.subscribers,
        lagging: s.lagging,
        queued_bytes: s.queued_bytes,
        dropped: s.dropped,
        dropped_before_subscriber: s.dropped_before_subscriber,
    }
}

/// The status report as JSON.
pub fn report(shared: &Shared) -> Value {
    to_json(&collect(shared))
}

/// `status_reply` content for a `status_request` (whose content says
/// nothing: [`StatusRequest`]).
pub(crate) fn reply(shared: &Shared, _request: StatusRequest) -> Value {
    let reply: Reply<StatusReport> = Reply::Ok(collect(shared));
    crate::errors::reply_json(reply)
}

fn to_json(report: &StatusReport) -> Value {
    // Only strings, numbers and string-keyed structs: serialising cannot
    // fail, but a failure must still not take the request down.
    serde_json::to_value(report).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the status report");
        json!({ "error": e.to_string() })
    })
}
