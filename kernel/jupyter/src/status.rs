//! The kernel's status report: who it is, how healthy it is, what its
//! session holds — one JSON object served three ways: `%status` (as a
//! table), `status_request` → `status_reply` (see `docs/protocol.md`) and
//! `skillctl status`.
//!
//! [`StatusReport`] is a struct of sections; a new area (operations,
//! persistence …) adds a field with its own section type, and every way of
//! serving the report carries it.

use serde::Serialize;
use serde_json::{json, Value};
use skillkernel_protocol::PROTOCOL_VERSION;

use crate::health::HealthReport;
use crate::operations::OperationInfo;
use crate::session::Shared;
use crate::store::PersistenceStatus;

/// Everything `status_reply` carries besides `status: "ok"`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub kernel: KernelStatus,
    pub health: HealthReport,
    pub session: SessionStatus,
    /// Where the session is kept, and whether that works.
    pub persistence: PersistenceStatus,
    /// Work in flight (cells, model pulls), oldest first.
    pub operations: Vec<OperationInfo>,
    /// Whether a shutdown has begun (new work is refused).
    pub shutting_down: bool,
}

/// Which kernel this is and how long it has run.
#[derive(Debug, Clone, Serialize)]
pub struct KernelStatus {
    pub name: String,
    pub version: String,
    pub protocol_version: String,
    pub pid: u32,
    /// This process's session id (the `session` of every header it sends).
    pub session_id: String,
    /// RFC 3339.
    pub started_at: String,
    pub uptime_secs: u64,
}

/// What the notebook session has accumulated.
#[derive(Debug, Clone, Serialize)]
pub struct SessionStatus {
    pub execution_count: u64,
    /// The history session number (grows with each start once state persists).
    pub history_session: i64,
    pub history_entries: usize,
    /// `%set` variables.
    pub variables: usize,
    /// User prompts in the conversation so far.
    pub conversation_turns: usize,
    /// What prompt cells use; `null` without a model backend.
    pub current_model: Option<String>,
}

impl StatusReport {
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
            history_entries: state.history.entries().len(),
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
            health: shared.health.report(),
            session,
            persistence: shared.persistence_status(),
            operations: shared.operations.list(),
            shutting_down: shared.exit_requested(),
        }
    }
}

/// The status report as JSON.
pub fn report(shared: &Shared) -> Value {
    to_json(&StatusReport::collect(shared))
}

/// `status_reply` content: `{"status": "ok", kernel, health, session …}`.
pub(crate) fn reply(shared: &Shared) -> Value {
    let mut content = json!({ "status": "ok" });
    if let (Some(reply), Value::Object(report)) = (content.as_object_mut(), report(shared)) {
        reply.extend(report);
    }
    content
}

fn to_json(report: &StatusReport) -> Value {
    // Only strings, numbers and string-keyed structs: serialising cannot
    // fail, but a failure must still not take the request down.
    serde_json::to_value(report).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the status report");
        json!({ "error": e.to_string() })
    })
}
