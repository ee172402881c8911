//! The sections of the configuration file other than `[models]` (which
//! the providers crate owns). Every key has a default, so every key is
//! optional; `deny_unknown_fields` turns a typo into an error.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[daemon]`: where the daemon keeps things and what it is called.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// State directory (sessions, response cache, dumps).
    /// Default: `$XDG_STATE_HOME/skillkernel` (~/.local/state/skillkernel).
    pub state_dir: Option<PathBuf>,
    /// PID file held under an exclusive lock in `--daemon` mode.
    pub pid_file: Option<PathBuf>,
    /// Name of the persisted session this kernel continues. Default: the
    /// connection file's stem when one is given (`-f`), else `default`.
    pub session: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// How often the log file is rotated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogRotation {
    Minutely,
    Hourly,
    #[default]
    Daily,
    Never,
}

/// `[log]`: what is logged and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter (`info`, `debug`, `skillkernel_kernel=trace`, …).
    /// Changes on reload.
    pub level: String,
    pub format: LogFormat,
    /// Directory for `skillkernel.log` and its rotated files; unset means
    /// stderr only (in `--daemon` mode stderr is /dev/null then).
    pub dir: Option<PathBuf>,
    /// A new file each period. Changes on reload.
    pub rotation: LogRotation,
    /// Also a new file before one would pass this many MiB (fractions
    /// allowed); unset: no size limit. Changes on reload.
    pub max_size_mb: Option<f64>,
    /// Rotated files kept (lz4-compressed); older ones are deleted.
    /// Changes on reload.
    pub keep: usize,
    /// The sandbox audit log (`<state_dir>/sandbox-audit.jsonl`) is moved
    /// aside before it would pass this many MiB; 0: never. Changes on
    /// reload.
    pub audit_max_size_mb: f64,
    /// Rotated audit logs kept (lz4-compressed). Changes on reload.
    pub audit_keep: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            dir: None,
            rotation: LogRotation::Daily,
            max_size_mb: None,
            keep: 7,
            audit_max_size_mb: 64.0,
            audit_keep: 10,
        }
    }
}

impl LogConfig {
    /// `max_size_mb` in bytes.
    pub fn max_size_bytes(&self) -> Option<u64> {
        self.max_size_mb.map(mib_to_bytes)
    }

    /// `audit_max_size_mb` in bytes; `None` for 0.
    pub fn audit_max_bytes(&self) -> Option<u64> {
        Some(self.audit_max_size_mb)
            .filter(|&mb| mb > 0.0)
            .map(mib_to_bytes)
    }

    /// What is wrong with the size keys, if anything.
    pub fn check_sizes(&self) -> Result<(), String> {
        if let Some(mb) = self.max_size_mb {
            // Smaller files would hold a line or two and rotate nonstop.
            if !(mb.is_finite() && mb >= MIN_LOG_FILE_MIB) {
                return Err(format!(
                    "[log] max_size_mb = {mb} must be at least {MIN_LOG_FILE_MIB} (4 KiB; leave it out for no size limit)"
                ));
            }
        }
        if !(self.audit_max_size_mb.is_finite() && self.audit_max_size_mb >= 0.0) {
            return Err(format!(
                "[log] audit_max_size_mb = {} must be 0 (never rotate) or more",
                self.audit_max_size_mb
            ));
        }
        Ok(())
    }
}

/// The smallest `max_size_mb`: 4 KiB.
const MIN_LOG_FILE_MIB: f64 = 4.0 / 1024.0;

fn mib_to_bytes(mb: f64) -> u64 {
    // At least one byte, so a tiny limit still means "a limit".
    ((mb * 1024.0 * 1024.0) as u64).max(1)
}

/// `[limits]`: bounds on work; all change on reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// A `!command` is killed after this many seconds.
    pub command_timeout_secs: u64,
    /// Larger inbound messages are dropped.
    pub max_message_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            command_timeout_secs: 600,
            max_message_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[shutdown]`: how long the shutdown coordinator waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// WaitingForOperations: how long running cells may finish before they
    /// are cancelled.
    pub grace_secs: f64,
    /// Each later phase (SavingState, NotifyingClients, Cleanup) is cut off
    /// after this long; the shutdown then goes on, forced.
    pub operation_timeout_secs: f64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_secs: 10.0,
            operation_timeout_secs: 5.0,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (docs/operations.md,
/// "Metrics"). Off unless `listen` is set. Takes effect at the next start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to serve `GET /metrics` on, e.g. `127.0.0.1:9464`.
    /// Another host than loopback only when named here.
    pub listen: Option<String>,
    /// When set, a scrape must send `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

/// `[state]`: the persisted session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Persist sessions in the state dir (off: everything in memory).
    pub persist: bool,
    /// Cell outputs longer than this are stored whole as artifacts;
    /// history keeps a summary.
    pub artifact_threshold_bytes: usize,
    /// Artifacts longer than this are lz4-compressed.
    pub compress_threshold_bytes: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            persist: true,
            artifact_threshold_bytes: 2048,
            compress_threshold_bytes: 512,
        }
    }
}
