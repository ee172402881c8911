//! State dumps (SIGUSR2, `skillkernel dump`): one JSON file per dump in
//! `<state-dir>/dumps/`, mode 0600, with the HMAC key and secrets
//! redacted.
//!
//! The file is written under a temporary name and renamed into place, so a
//! reader that sees `skillkernel-*.json` sees a complete dump. Only the
//! newest [`KEEP`] dumps are kept, so a signal storm cannot fill the disk.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use thiserror::Error;

use crate::redact::redact_json;

/// Dumps kept in the directory; older ones are deleted.
pub const KEEP: usize = 20;

#[derive(Debug, Error)]
#[error("cannot write a state dump in {dir}: {source}")]
pub struct DumpError {
    dir: PathBuf,
    source: std::io::Error,
}

/// The directory dumps go to.
pub fn dump_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("dumps")
}

/// Writes `dump` (redacted here, whatever the caller put in) and returns
/// the file's path.
pub fn write(state_dir: &Path, mut dump: Value) -> Result<PathBuf, DumpError> {
    let dir = dump_dir(state_dir);
    let err = |source| DumpError {
        dir: dir.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(err)?;
    redact_json(&mut dump);
    let now = chrono::Utc::now();
    let name = format!(
        "skillkernel-{}-{}.json",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id()
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    let text = serde_json::to_vec_pretty(&dump).unwrap_or_default();
    file.write_all(&text).map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(err)?;
    prune(&dir);
    Ok(path)
}

/// Deletes all but the newest [`KEEP`] dumps. Names sort by time.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dumps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("skillkernel-") && n.ends_with(".json"))
        })
        .collect();
    dumps.sort();
    let excess = dumps.len().saturating_sub(KEEP);
    for old in &dumps[..excess] {
        if let Err(e) = std::fs::remove_file(old) {
            tracing::debug!(path = %old.display(), error = %e, "could not prune an old dump");
        }
    }
}

/// The daemon-level facts every dump carries, around the kernel's report.
pub struct DumpContext<'a> {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub uptime_secs: f64,
    pub config: Value,
    pub config_files: &'a [PathBuf],
    pub connection: Value,
    pub reloads: u64,
    pub last_reload_error: Option<&'a str>,
    pub dumps: u64,
}

/// Assembles a dump from the daemon's context and the kernel's report.
pub fn assemble(ctx: DumpContext<'_>, kernel: Value) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "started_at": ctx.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "dumped_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "uptime_secs": ctx.uptime_secs,
        "config": ctx.config,
        "config_files": ctx.config_files,
        "connection": ctx.connection,
        "reloads": {"applied": ctx.reloads, "last_error": ctx.last_reload_error},
        "dumps_written": ctx.dumps,
        "kernel": kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_dump_is_private_redacted_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut last = PathBuf::new();
        for i in 0..KEEP + 3 {
            last = write(dir.path(), json!({"n": i, "key": "s3cret"})).unwrap();
        }
        let mode = std::fs::metadata(&last).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&last).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let count = std::fs::read_dir(dump_dir(dir.path())).unwrap().count();
        assert_eq!(count, KEEP, "older dumps pruned, no temporary files left");
    }
}
