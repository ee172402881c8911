//! Config reload (SIGHUP, SIGUSR1, `skillkernel reload`).
//!
//! The files are read again and layered as at start, with the same
//! command-line options and environment on top (so a flag still wins over
//! a file). An invalid file changes nothing: the running configuration
//! stays and the error is logged with the file and key. A valid one is
//! compared key by key with the running configuration; what can change
//! live — log level, limits, shutdown timeouts, health thresholds, model
//! provider settings — is applied, and what needs a restart (state dir,
//! PID file, log files, session) is logged as such and kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skillkernel_kernel::{KernelHandle, Models, ShutdownSettings};
use skillkernel_providers::Registry;

use crate::cli::StartArgs;
use crate::config::{Config, LogConfig};
use crate::logging::LogHandle;

/// Sets the sandbox audit log's size limit from `[log]`.
pub fn apply_audit_rotation(kernel: &KernelHandle, log: &LogConfig) {
    if let Some(sandbox) = kernel.shared().sandbox() {
        sandbox.audit().set_max_bytes(log.audit_max_bytes());
    }
}

/// Keeps what a reload needs: the start's options and the running config.
pub struct Reloader {
    args: StartArgs,
    running: Config,
    kernel: KernelHandle,
    log: Arc<LogHandle>,
    /// How many reloads applied, and the last failure, for reports.
    pub applied: u64,
    pub last_error: Option<String>,
    pub files: Vec<PathBuf>,
}

/// What one reload did.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadOutcome {
    /// Dotted keys now in effect with new values.
    pub applied: Vec<String>,
    /// Dotted keys that changed in the files but need a restart.
    pub needs_restart: Vec<String>,
}

/// Sections whose keys take effect only at the next start.
const RESTART_ONLY: [&str; 8] = [
    "daemon",
    "mcp",
    "metrics",
    "tracing",
    "sandbox",
    "state",
    "log.dir",
    "log.format",
];

impl Reloader {
    pub fn new(
        args: StartArgs,
        running: Config,
        files: Vec<PathBuf>,
        kernel: KernelHandle,
        log: Arc<LogHandle>,
    ) -> Reloader {
        Reloader {
            args,
            running,
            kernel,
            log,
            applied: 0,
            last_error: None,
            files,
        }
    }

    /// The configuration in effect.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Re-reads the configuration and applies what changed.
    pub fn reload(&mut self) -> Result<ReloadOutcome, String> {
        let (mut new, files) = match Config::load(self.args.config.as_deref()) {
            Ok(loaded) => loaded,
            Err(e) => {
                let message = format!("{e}; keeping the running configuration");
                tracing::error!("reload failed: {message}");
                self.last_error = Some(message.clone());
                return Err(message);
            }
        };
        self.args.apply_to(&mut new);
        let changed = changed_keys(&self.running, &new);
        let (needs_restart, live): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|key| RESTART_ONLY.iter().any(|p| is_under(key, p)));
        if !needs_restart.is_empty() {
            tracing::warn!(
                keys = ?needs_restart,
                "reload: these settings take effect at the next start; keeping the running values"
            );
        }
        let mut outcome = ReloadOutcome {
            applied: Vec::new(),
            needs_restart,
        };
        if live.iter().any(|k| is_under(k, "log.level")) {
            if let Err(e) = self.log.set_level(&new.log.level) {
                tracing::error!(level = %new.log.level, error = %e, "reload: invalid log level; keeping the old one");
                new.log.level = self.running.log.level.clone();
            }
        }
        if live
            .iter()
            .any(|k| is_under(k, "log") && !is_under(k, "log.level"))
        {
            self.log.set_rotation(&new.log);
            apply_audit_rotation(&self.kernel, &new.log);
        }
        if live.iter().any(|k| is_under(k, "limits")) {
            self.kernel.set_limits(
                Duration::from_secs(new.limits.command_timeout_secs),
                new.limits.max_message_bytes,
            );
        }
        if live.iter().any(|k| is_under(k, "shutdown")) {
            self.kernel.set_shutdown_settings(shutdown_settings(&new));
        }
        if live.iter().any(|k| is_under(k, "health")) {
            self.kernel.set_health_thresholds(new.health.clone());
        }
        if live.iter().any(|k| is_under(k, "models")) {
            self.reload_models(&new);
        }
        // Skill files are re-read on every reload (SIGUSR1), changed or not.
        let skills_changed = live.iter().any(|k| is_under(k, "skills"));
        if let Some(report) = self
            .kernel
            .reload_skills(skills_changed.then(|| new.skills.clone()))
        {
            if !report.is_quiet() {
                tracing::info!(%report, "reload: skills re-read");
            }
            for failure in &report.failed {
                tracing::warn!(%failure, "reload: skill did not load");
            }
        }
        // Keys that need a restart keep their running values, so reports
        // show what is in effect.
        new.daemon = self.running.daemon.clone();
        new.state = self.running.state.clone();
        new.sandbox = self.running.sandbox.clone();
        new.metrics = self.running.metrics.clone();
        new.tracing = self.running.tracing.clone();
        new.log.dir = self.running.log.dir.clone();
        new.log.format = self.running.log.format;
        outcome.applied = changed_keys(&self.running, &new);
        if outcome.applied.is_empty() && outcome.needs_restart.is_empty() {
            tracing::info!("reload: configuration unchanged");
        } else {
            tracing::info!(changed = ?outcome.applied, "configuration reloaded");
        }
        self.running = new;
        self.files = files;
        self.applied += 1;
        self.last_error = None;
        Ok(outcome)
    }

    fn reload_models(&self, new: &Config) {
        let Some(models) = self.kernel.models() else {
            return;
        };
        let (registry, notes) =
            models
                .registry
                .reconfigured(&new.models, &new.model_dir(), &self.running.model_dir());
        for note in notes {
            tracing::warn!("reload: {note}");
        }
        self.kernel.set_models(Some(models_from(new, registry)));
    }
}

/// What prompt cells use, from `[models]` and a built registry.
pub fn models_from(config: &Config, registry: Registry) -> Models {
    let m = &config.models;
    Models {
        registry: Arc::new(registry),
        default_model: m.default.clone(),
        options: m.generation.options(),
        system_prompt: Some(m.system_prompt.clone()).filter(|s| !s.trim().is_empty()),
    }
}

/// The shutdown coordinator's timeouts from `[shutdown]`.
pub fn shutdown_settings(config: &Config) -> ShutdownSettings {
    let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 3600.0));
    ShutdownSettings {
        grace: secs(config.shutdown.grace_secs),
        operation_timeout: secs(config.shutdown.operation_timeout_secs),
    }
}

fn is_under(key: &str, prefix: &str) -> bool {
    key == prefix || key.starts_with(&format!("{prefix}."))
}

/// Dotted paths of the leaves that differ between two configurations.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let old = serde_json::to_value(old).unwrap_or(Value::Null);
    let new = serde_json::to_value(new).unwrap_or(Value::Null);
    let mut keys = Vec::new();
    diff("", &old, &new, &mut keys);
    keys
}

fn diff(path: &str, old: &Value, new: &Value, keys: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                diff(
                    &child,
                    a.get(name).unwrap_or(&Value::Null),
                    b.get(name).unwrap_or(&Value::Null),
                    keys,
                );
            }
        }
        (a, b) if a != b => keys.push(path.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_names_each_leaf_that_differs() {
        let old = Config::default();
        let mut new = Config::default();
        new.limits.command_timeout_secs = 5;
        new.log.level = "debug".into();
        new.models.profiles.insert("fast".into(), vec!["a".into()]);
        assert_eq!(
            changed_keys(&old, &new),
            [
                "limits.command_timeout_secs",
                "log.level",
                "models.profiles.fast"
            ]
        );
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }

    #[test]
    fn restart_only_keys_are_recognised_by_prefix() {
        assert!(RESTART_ONLY.iter().any(|p| is_under("daemon.state_dir", p)));
        assert!(RESTART_ONLY.iter().any(|p| is_under("log.dir", p)));
        assert!(!RESTART_ONLY.iter().any(|p| is_under("log.level", p)));
        assert!(!RESTART_ONLY.iter().any(|p| is_under("logx", p)));
        assert!(RESTART_ONLY
            .iter()
            .any(|p| is_under("mcp.servers.time.command", p)));
    }
}
