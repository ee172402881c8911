//! `status_request` / `status_reply`: the kernel's health and state (what
//! `%status` shows as a table; `skillctl status`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ExtensionRequest, RequestError};
use crate::content::ErrorContent;
use crate::RequestType;

/// `status_request` content: `{}` (other keys are ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {}

impl ExtensionRequest for StatusRequest {
    const TYPE: RequestType = RequestType::Status;
    type Answer = StatusReport;
    type Error = ErrorContent;

    fn parse(content: &Value) -> Result<Self, RequestError> {
        StatusRequest::deserialize(content).map_err(|e| RequestError::Invalid(e.to_string()))
    }

    fn actions() -> &'static [&'static str] {
        &[]
    }
}

/// What a `status_reply` with `status: ok` carries: one object per section.
/// Later versions may add sections; readers ignore keys they do not know.
///
/// `T` is the type of `health.thresholds`: the kernel's `[health]` config
/// section where the report is made, a plain map where it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport<T = Map<String, Value>> {
    pub kernel: KernelStatus,
    pub health: HealthReport<T>,
    pub session: SessionStatus,
    /// Where the session is kept, and whether that works.
    pub persistence: PersistenceStatus,
    /// Work in flight (cells, model pulls), oldest first.
    pub operations: Vec<OperationInfo>,
    /// Whether a shutdown has begun (new work is refused).
    pub shutting_down: bool,
    /// IOPub's subscribers and what they lost.
    #[serde(default)]
    pub iopub: IopubStatus,
    /// Telemetry leaving the kernel (traces, the log file): what got out,
    /// what was dropped, and why it is dropping now.
    #[serde(default)]
    pub telemetry: Vec<TelemetryStatus>,
}

/// One telemetry outlet. Telemetry that cannot get out is dropped rather
/// than waited for; this says how much.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryStatus {
    /// `traces` or `log`.
    pub name: String,
    /// A collector URL or a file.
    pub target: String,
    /// Items that got out (spans exported, lines written).
    pub delivered: u64,
    /// Items dropped since start.
    pub dropped: u64,
    /// Why items are being dropped now; absent while all is well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<String>,
}

/// IOPub delivery: subscribers connected now, and messages dropped since
/// start for subscribers that did not read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IopubStatus {
    pub subscribers: usize,
    /// Subscribers with at least half their queue waiting.
    pub lagging: usize,
    /// Bytes waiting in all subscribers' queues.
    pub queued_bytes: usize,
    /// Dropped for a subscriber whose queue was full.
    pub dropped: u64,
    /// Dropped while waiting for the first subscriber.
    pub dropped_before_subscriber: u64,
}

/// Which kernel this is and how long it has run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The latest health sample with its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport<T = Map<String, Value>> {
    pub status: HealthStatus,
    /// One line per check that is not healthy, e.g. `rss 5.1 GiB > 4 GiB`.
    pub reasons: Vec<String>,
    #[serde(flatten)]
    pub sample: HealthSample,
    /// How the kernel's work went lately: failures, latency, breakers,
    /// backends.
    #[serde(default)]
    pub service: ServiceHealth,
    /// The `[health]` settings in force.
    pub thresholds: T,
}

/// How the kernel's work went lately: what `[health]` judges beside
/// memory and load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceHealth {
    /// Cells and skill runs that ended in the recent window.
    pub recent_runs: u32,
    /// Of those, the ones that failed.
    pub recent_failures: u32,
    /// Requests other than `execute_request` answered in the recent
    /// window, and the 99th percentile of their latency.
    pub recent_requests: u32,
    pub request_p99_ms: Option<f64>,
    /// Skills whose circuit breaker is open.
    pub open_breakers: Vec<String>,
    /// Backends none of whose hosts answered lately, with the last error.
    pub unreachable_backends: Vec<String>,
}

/// How the kernel's process and host are doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

impl HealthStatus {
    /// The word used on the wire and in `%status`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reading of the process and its host. Units are in the field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSample {
    /// When it was taken, RFC 3339.
    pub sampled_at: String,
    /// Resident memory of the kernel process.
    pub rss_bytes: u64,
    /// The process's CPU use since the previous sample, 100 = one core
    /// busy (0 in the first sample).
    pub cpu_percent: f64,
    pub system_memory_total_bytes: u64,
    pub system_memory_available_bytes: u64,
    /// 1, 5 and 15 minute load averages.
    pub load_average: [f64; 3],
    /// Cores the process may run on, which the load is divided by.
    pub cpu_cores: usize,
    pub system_uptime_secs: u64,
    /// Free space on the file system of the state directory (`None`
    /// without one, or when it cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir_free_bytes: Option<u64>,
}

impl HealthSample {
    /// Available system memory as a share of the total; `None` when the
    /// total could not be read.
    pub fn system_memory_available_percent(&self) -> Option<f64> {
        (self.system_memory_total_bytes > 0).then(|| {
            self.system_memory_available_bytes as f64 * 100.0
                / self.system_memory_total_bytes as f64
        })
    }
}

/// What the notebook session has accumulated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Whether and where the session is persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistenceStatus {
    /// The session name; `None` when persistence is off.
    pub session: Option<String>,
    /// The session's store directory; `None` when persistence is off.
    pub path: Option<PathBuf>,
    /// True while changes reach the store.
    pub persisted: bool,
    /// Why the session is only in memory, when it is.
    pub reason: Option<String>,
    /// The history session number of this kernel start.
    pub history_session: i64,
    /// History entries over all sessions.
    pub history_entries: usize,
    /// The newest of them, held in memory; the store answers for the rest.
    #[serde(default)]
    pub history_in_memory: usize,
    /// Artifacts stored, and their stored (compressed) size.
    pub artifacts: u64,
    pub artifact_bytes: u64,
    /// Changes written but not yet flushed to disk.
    pub unsaved_changes: u64,
}

/// One operation in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationInfo {
    pub id: u64,
    /// What kind of work: the request's `msg_type` (`execute_request`, …).
    pub kind: String,
    /// The request's `msg_id`, to match it with a client's log.
    pub msg_id: String,
    /// When it started, RFC 3339.
    pub started_at: String,
    pub running_secs: f64,
}
