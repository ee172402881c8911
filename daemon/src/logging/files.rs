//! The log file: `tracing-appender`'s rolling appender writing
//! `<dir>/skillkernel.log.<date>`, with `<dir>/skillkernel.log` a symlink to
//! the file being written (with `rotation = "never"`, `skillkernel.log` is
//! the file itself).

use std::fs;
use std::path::{Path, PathBuf};

use tracing_appender::rolling::{RollingFileAppender, Rotation};

use super::LogError;
use crate::config::LogRotation;

/// The name operators look at: the live file or a symlink to it.
pub const FILE_NAME: &str = "skillkernel.log";

/// Opens the rolling appender in `dir` (created if missing). `dir` should be
/// absolute: the appender's symlink points at `dir/<file>` as given.
pub(super) fn appender(dir: &Path, rotation: LogRotation) -> Result<RollingFileAppender, LogError> {
    let dir_error = |source| LogError::Dir {
        dir: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(dir_error)?;
    adopt_previous_layout(dir, rotation).map_err(dir_error)?;
    let mut builder = RollingFileAppender::builder()
        .rotation(match rotation {
            LogRotation::Minutely => Rotation::MINUTELY,
            LogRotation::Hourly => Rotation::HOURLY,
            LogRotation::Daily => Rotation::DAILY,
            LogRotation::Never => Rotation::NEVER,
        })
        .filename_prefix(FILE_NAME);
    // With `never` the file is `skillkernel.log` itself; a symlink of the
    // same name would replace it.
    if rotation != LogRotation::Never {
        builder = builder.latest_symlink(FILE_NAME);
    }
    builder.build(dir).map_err(|e| LogError::Open {
        dir: dir.to_owned(),
        message: error_chain(&e),
    })
}

/// Makes `skillkernel.log` fit the current rotation when an earlier run
/// used another one. The appender replaces `skillkernel.log` with its
/// symlink by deleting it, which would lose a plain log file from a
/// `never` run: that file is renamed to a dated (rotated) name instead.
/// Conversely a `never` run must not append through a leftover symlink
/// into an old rotated file.
fn adopt_previous_layout(dir: &Path, rotation: LogRotation) -> std::io::Result<()> {
    let live = dir.join(FILE_NAME);
    let Ok(meta) = fs::symlink_metadata(&live) else {
        return Ok(());
    };
    if rotation == LogRotation::Never {
        if meta.file_type().is_symlink() {
            fs::remove_file(&live)?;
        }
    } else if meta.is_file() {
        let modified = meta.modified()?;
        // Seconds make the name unique and sort it by time among the others.
        let stamp = chrono::DateTime::<chrono::Utc>::from(modified).format("%Y-%m-%d-%H-%M-%S");
        fs::rename(&live, dir.join(format!("{FILE_NAME}.{stamp}")))?;
    }
    Ok(())
}

/// The name of the file the appender writes now, when it rotates (the
/// symlink's target); `None` while the appender is replacing the symlink.
pub(super) fn current_file(dir: &Path) -> Option<String> {
    let target: PathBuf = fs::read_link(dir.join(FILE_NAME)).ok()?;
    Some(target.file_name()?.to_str()?.to_owned())
}

/// An error and its sources on one line (`InitError` keeps the io error
/// that says *why* in its source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_log_from_a_never_run_is_kept_as_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "old run\n").unwrap();
        let _appender = appender(dir.path(), LogRotation::Daily).unwrap();
        let kept: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| fs::read_to_string(dir.path().join(n)).ok().as_deref() == Some("old run\n"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].starts_with("skillkernel.log.2"), "{kept:?}");
        assert!(current_file(dir.path()).is_some());
    }

    #[test]
    fn the_live_name_is_a_symlink_to_the_dated_file_when_rotating() {
        let dir = tempfile::tempdir().unwrap();
        let _appender = appender(dir.path(), LogRotation::Hourly).unwrap();
        let current = current_file(dir.path()).unwrap();
        assert!(current.starts_with("skillkernel.log.20"), "{current}");
        assert!(dir.path().join(&current).is_file());
    }
}
