//! The daemon's configuration: TOML files layered system → user →
//! `--config`, then environment variables and command-line options on top.
//!
//! Files merge table by table, so a user file that sets only
//! `[models.ollama] host` keeps everything else from the system file. An
//! unknown key is an error naming the file, so a typo is not silently
//! ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skillkernel_kernel::health::HealthThresholds;
use skillkernel_providers::ModelsConfig;
use skillkernel_sandbox::SandboxConfig;
use skillkernel_skills::config::SkillsConfig;
use thiserror::Error;

mod mcp_config;
mod sections;
mod tracing_config;

pub use mcp_config::{McpConfig, McpServerConfig};
pub use sections::{
    DaemonConfig, LimitsConfig, LogConfig, LogFormat, LogRotation, MetricsConfig, ShutdownConfig,
    StateConfig,
};
pub use tracing_config::TracingConfig;

/// Everything the configuration files can set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub shutdown: ShutdownConfig,
    pub state: StateConfig,
    /// `[health]`: how often the health monitor samples and where its
    /// thresholds lie. Change on reload.
    pub health: HealthThresholds,
    pub models: ModelsConfig,
    /// `[skills]`: skill directories, the index, hot reload. Changes on
    /// reload.
    pub skills: SkillsConfig,
    /// `[sandbox]`: what `!command` cells may do beyond the defaults, output
    /// caps, session limits. Takes effect at the next start.
    pub sandbox: SandboxConfig,
    /// `[metrics]`: the Prometheus endpoint. Takes effect at the next
    /// start.
    pub metrics: MetricsConfig,
    /// `[tracing]`: OpenTelemetry traces over OTLP/HTTP. Takes effect at
    /// the next start.
    pub tracing: TracingConfig,
    /// `[mcp]`: the daemon as an MCP server. Takes effect at the next
    /// start.
    pub mcp: McpConfig,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The system-wide file; `SKILLKERNEL_SYSTEM_CONFIG` moves it ("" skips it).
fn system_file() -> Option<PathBuf> {
    match std::env::var_os("SKILLKERNEL_SYSTEM_CONFIG") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from("/etc/skillkernel/config.toml")),
    }
}

/// The user's file under `$XDG_CONFIG_HOME` (default `~/.config`).
fn user_file() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")))
        .map(|d| d.join("skillkernel/config.toml"))
}

/// Parses one file into a TOML table.
fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// Lays `top` over `base`, table by table.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Config {
    /// Reads the layered files: optional system and user files, then
    /// `explicit`, which must exist.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Vec<PathBuf>), ConfigError> {
        let mut table = toml::Table::new();
        let mut used = Vec::new();
        let optional = [system_file(), user_file()];
        for path in optional.into_iter().flatten().filter(|p| p.exists()) {
            merge(&mut table, read_table(&path)?);
            // Each file must be valid on its own, so errors name the right one.
            Self::from_table(table.clone(), &path)?;
            used.push(path);
        }
        if let Some(path) = explicit {
            merge(&mut table, read_table(path)?);
            Self::from_table(table.clone(), path)?;
            used.push(path.to_owned());
        }
        let last = used.last().cloned().unwrap_or_default();
        Ok((Self::from_table(table, &last)?, used))
    }

    fn from_table(table: toml::Table, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| invalid(e.to_string()))?;
        // Checks across keys, which serde cannot make one field at a time.
        config
            .models
            .plan()
            .map_err(|e| invalid(format!("[models]: {e}")))?;
        if let Some(token) = &config.metrics.bearer_token {
            if token.is_empty() || token.trim() != token || token.contains(char::is_whitespace) {
                return Err(invalid(
                    "[metrics] bearer_token must be a non-empty token without spaces \
                     (leave it out for no token)"
                        .into(),
                ));
            }
        }
        if let Some(listen) = &config.metrics.listen {
            listen.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid(format!(
                    "[metrics] listen = {listen:?} is not an address with a port, like \"127.0.0.1:9464\""
                ))
            })?;
        }
        config
            .tracing
            .check()
            .map_err(|e| invalid(format!("[tracing] {e}")))?;
        config.mcp.check().map_err(invalid)?;
        config.log.check_sizes().map_err(invalid)?;
        Ok(config)
    }

    /// The state directory: configured, else `$XDG_STATE_HOME/skillkernel`.
    pub fn state_dir(&self) -> PathBuf {
        self.daemon.state_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_STATE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
                .unwrap_or_else(|| PathBuf::from("."))
                .join("skillkernel")
        })
    }

    /// The model directory: configured, else `$XDG_DATA_HOME/skillkernel/models`.
    pub fn model_dir(&self) -> PathBuf {
        self.models.dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_DATA_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
                .unwrap_or_else(|| PathBuf::from("."))
                .join("skillkernel/models")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_override_earlier_ones_key_by_key() {
        let mut base: toml::Table =
            "[models]\ndefault = \"a\"\n[models.ollama]\nhost = \"h1\"\n[models.cache]\nttl_secs = 5"
                .parse()
                .unwrap();
        let top: toml::Table = "[models.ollama]\nhost = \"h2\"".parse().unwrap();
        merge(&mut base, top);
        let c = Config::from_table(base, Path::new("x")).unwrap();
        assert_eq!(c.models.default, "a");
        assert_eq!(c.models.ollama.host.as_deref(), Some("h2"));
        assert_eq!(c.models.cache.ttl_secs, 5);
    }

    #[test]
    fn a_typo_is_an_error_naming_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[models]\ndefualt = \"x\"\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("defualt"), "{e}");
        let missing = Config::load(Some(&dir.path().join("nope.toml")))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
    }
}
