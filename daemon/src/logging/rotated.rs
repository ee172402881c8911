//! Rotated log files — the daemon's and the sandbox audit log's —
//! compressed with lz4 (frame format, `.lz4`) and pruned to the newest
//! `keep`, by one background thread: at start, every ten seconds, and at
//! once when the log file rotates — never on the logging path.
//!
//! A rotated file is `<base>.<stamp>` with a stamp older than the file being
//! written (stamps sort as text), where `<base>` is `skillkernel.log` (its
//! live file is the symlink's target) or `sandbox-audit.jsonl` (its live
//! file is the base name itself, so every stamped file is rotated). A file
//! is replaced by its `.lz4` only once the compressed copy is complete,
//! synced and renamed into place; a crash leaves at worst a `.lz4.partial`,
//! which the next pass deletes, and the original.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use skillkernel_stdx::outlet::Outlet;
use thiserror::Error;
use tracing_appender::non_blocking::ErrorCounter;

use super::files::{self, RotationSettings, FILE_NAME};

/// How often the thread looks for rotated files it was not told of (the
/// audit log's) and for lines the log writer's queue dropped.
const INTERVAL: Duration = Duration::from_secs(10);

const COMPRESSED: &str = ".lz4";
const PARTIAL: &str = ".lz4.partial";

/// A moved-aside audit file unchanged for this long is done with.
const AUDIT_SETTLE: Duration = Duration::from_secs(5);

/// The sandbox audit log's name in the state directory.
const AUDIT_FILE: &str = skillkernel_sandbox::audit::AUDIT_FILE;

/// A file the maintenance could not handle; logged, retried next pass.
#[derive(Debug, Error)]
pub enum TidyError {
    #[error("cannot list the log directory {dir}: {source}")]
    List { dir: PathBuf, source: io::Error },
    #[error("cannot compress the rotated log {path}: {source}")]
    Compress { path: PathBuf, source: io::Error },
    #[error("cannot delete the old log {path}: {source}")]
    Delete { path: PathBuf, source: io::Error },
}

/// What one pass did.
#[derive(Debug, Default, PartialEq)]
pub struct Tidied {
    pub compressed: Vec<PathBuf>,
    pub deleted: Vec<PathBuf>,
    pub errors: Vec<String>,
}

/// What wakes the thread.
pub(super) enum Wake {
    /// The log file rotated: tidy now.
    Rotated,
    Stop,
}

/// What the thread looks after.
pub(super) struct Looked {
    /// `[log] dir`, when logging to files.
    pub log_dir: Option<PathBuf>,
    /// The state directory, where the audit log is.
    pub audit_dir: Option<PathBuf>,
    pub settings: Arc<RotationSettings>,
    /// Lines the log writer's queue dropped, and where to count them.
    pub queue: Option<(ErrorCounter, Arc<Outlet>)>,
}

/// The background thread; it stops when this is dropped.
pub(super) struct Maintenance {
    wake: mpsc::Sender<Wake>,
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
    }
}

impl Maintenance {
    /// Starts the thread; its first pass runs at once. `wake` and
    /// `woken` are the two ends of the channel the log file rotates on.
    pub(super) fn start(
        looked: Looked,
        wake: mpsc::Sender<Wake>,
        woken: mpsc::Receiver<Wake>,
    ) -> io::Result<Maintenance> {
        std::thread::Builder::new()
            .name("skillkernel-logs".into())
            .spawn(move || {
                let mut queue_dropped = 0;
                loop {
                    pass(&looked);
                    if let Some((counter, outlet)) = &looked.queue {
                        let dropped = counter.dropped_lines();
                        if dropped > queue_dropped {
                            let lost = (dropped - queue_dropped) as u64;
                            if outlet.dropped(lost, "the log writer fell behind") {
                                tracing::warn!(
                                    lost,
                                    "the log writer fell behind: log lines were dropped"
                                );
                            }
                            queue_dropped = dropped;
                        }
                    }
                    match woken.recv_timeout(INTERVAL) {
                        Ok(Wake::Rotated) | Err(RecvTimeoutError::Timeout) => {}
                        Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Maintenance { wake })
    }
}

/// One pass over the log directory and the audit log.
fn pass(looked: &Looked) {
    let settings = &looked.settings;
    let families = [
        looked.log_dir.as_deref().map(|dir| {
            (
                dir,
                FILE_NAME,
                settings.keep(),
                settings.stamped(),
                Duration::ZERO,
            )
        }),
        // Another kernel sharing the state dir may still append to an
        // audit file this one just moved aside: left alone until it
        // settles.
        looked
            .audit_dir
            .as_deref()
            .map(|dir| (dir, AUDIT_FILE, settings.audit_keep(), false, AUDIT_SETTLE)),
    ];
    for (dir, base, keep, rotating, settle) in families.into_iter().flatten() {
        let done = tidy(dir, base, keep, rotating, settle);
        for path in &done.compressed {
            tracing::debug!(path = %path.display(), "rotated log compressed");
        }
        for path in &done.deleted {
            tracing::info!(path = %path.display(), keep, "old log deleted");
        }
        for error in &done.errors {
            tracing::warn!("{error}");
        }
    }
}

/// A log file in the directory, by the date in its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rotated {
    date: String,
    compressed: bool,
}

impl Rotated {
    fn name(&self, base: &str) -> String {
        let suffix = if self.compressed { COMPRESSED } else { "" };
        format!("{base}.{}{suffix}", self.date)
    }
}

/// `2024-05-01`, `2024-05-01-13`, `2024-05-01-13-05`: digits and dashes.
fn is_date(text: &str) -> bool {
    text.len() >= 10
        && text.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// One pass over `<dir>/<base>.*`: deletes stale partial files, compresses
/// rotated files, then deletes all but the newest `keep` rotated files.
/// `rotating` says the live file is the stamped one `<base>` links to;
/// otherwise `<base>` is the live file and every stamped file is old. A
/// plain file modified less than `settle` ago is left alone.
pub fn tidy(dir: &Path, base: &str, keep: usize, rotating: bool, settle: Duration) -> Tidied {
    let mut done = Tidied::default();
    // While the appender swaps its symlink the live file is unknown, and
    // only already-compressed files are touched.
    let current = if rotating {
        files::current_file(dir, base)
    } else {
        None
    };
    let is_rotated = |date: &str| match &current {
        Some(current) => current
            .strip_prefix(&format!("{base}."))
            .is_some_and(|live| date < live),
        None => !rotating,
    };
    let found = match scan(dir, base, &mut done) {
        Ok(found) => found,
        Err(e) => {
            done.errors.push(e.to_string());
            return done;
        }
    };
    let settling = |file: &Rotated| {
        !settle.is_zero()
            && fs::metadata(dir.join(file.name(base)))
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().unwrap_or_default() < settle)
    };
    let mut rotated = Vec::new();
    for file in found {
        if file.compressed {
            rotated.push(file);
        } else if is_rotated(&file.date) && !settling(&file) {
            let path = dir.join(file.name(base));
            match compress(&path) {
                Ok(out) => {
                    done.compressed.push(out);
                    rotated.push(Rotated {
                        compressed: true,
                        ..file
                    });
                }
                Err(source) => {
                    done.errors
                        .push(TidyError::Compress { path, source }.to_string());
                    rotated.push(file);
                }
            }
        }
    }
    // Newest first; a date left both plain and compressed counts once.
    rotated.sort_by(|a, b| b.date.cmp(&a.date));
    rotated.dedup_by(|a, b| a.date == b.date);
    for old in rotated.iter().skip(keep) {
        for compressed in [false, true] {
            let path = dir.join(
                Rotated {
                    compressed,
                    ..old.clone()
                }
                .name(base),
            );
            match fs::remove_file(&path) {
                Ok(()) => done.deleted.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => done
                    .errors
                    .push(TidyError::Delete { path, source }.to_string()),
            }
        }
    }
    done
}

/// The dated `<base>.*` files in `dir`; stale `.lz4.partial` files are
/// deleted. A directory not made yet holds none.
fn scan(dir: &Path, base: &str, done: &mut Tidied) -> Result<Vec<Rotated>, TidyError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TidyError::List {
                dir: dir.to_owned(),
                source,
            })
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(base)?.strip_prefix('.'))
        else {
            continue;
        };
        // Only this thread writes partial files, and not concurrently with
        // itself: one seen here is left over from an interrupted pass.
        if rest.ends_with(PARTIAL) {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => done.deleted.push(path),
                Err(source) => done
                    .errors
                    .push(TidyError::Delete { path, source }.to_string()),
            }
            continue;
        }
        let (date, compressed) = match rest.strip_suffix(COMPRESSED) {
            Some(date) => (date, true),
            None => (rest, false),
        };
        if is_date(date) && entry.file_type().is_ok_and(|t| t.is_file()) {
            found.push(Rotated {
                date: date.to_owned(),
                compressed,
            });
        }
    }
    Ok(found)
}

/// Compresses `path` to `path.lz4`; the original is removed only after the
/// compressed file is synced and renamed into place.
fn compress(path: &Path) -> io::Result<PathBuf> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(PARTIAL);
    let partial = PathBuf::from(partial);
    let mut out = path.as_os_str().to_owned();
    out.push(COMPRESSED);
    let out = PathBuf::from(out);
    if out.symlink_metadata().is_ok() {
        // Never replaced: the writer does not reuse names, so this is
        // someone else's file.
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists; left uncompressed", out.display()),
        ));
    }

    let mut input = File::open(path)?;
    let file = File::create(&partial)?;
    // Logs may be private: the copy gets the original's permissions.
    file.set_permissions(input.metadata()?.permissions())?;
    let mut encoder = lz4_flex::frame::FrameEncoder::new(BufWriter::new(file));
    io::copy(&mut input, &mut encoder)?;
    let file = encoder
        .finish()?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&partial, &out)?;
    // The rename must be durable before the only other copy goes.
    if let Some(parent) = out.parent() {
        File::open(parent)?.sync_all()?;
    }
    fs::remove_file(path)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests::names;
    use std::io::Read;

    fn decompress(path: &Path) -> String {
        let mut text = String::new();
        lz4_flex::frame::FrameDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn rotated_files_are_compressed_and_the_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(
            d.join("skillkernel.log.2020-01-01"),
            "old line\n".repeat(100),
        )
        .unwrap();
        fs::write(d.join("skillkernel.log.2020-01-03"), "live\n").unwrap();
        fs::write(d.join("skillkernel.log.2020-01-04"), "future\n").unwrap();
        fs::write(d.join("skillkernel.log.notes"), "not ours\n").unwrap();
        std::os::unix::fs::symlink(
            d.join("skillkernel.log.2020-01-03"),
            d.join("skillkernel.log"),
        )
        .unwrap();
        let done = tidy(d, FILE_NAME, 10, true, Duration::ZERO);
        assert!(done.errors.is_empty(), "{:?}", done.errors);
        assert_eq!(
            names(d),
            [
                "skillkernel.log",
                "skillkernel.log.2020-01-01.lz4",
                "skillkernel.log.2020-01-03",
                "skillkernel.log.2020-01-04",
                "skillkernel.log.notes"
            ]
        );
        assert_eq!(
            decompress(&d.join("skillkernel.log.2020-01-01.lz4")),
            "old line\n".repeat(100)
        );
    }

    #[test]
    fn nothing_is_compressed_while_the_live_file_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("skillkernel.log.2020-01-01"), "x").unwrap();
        let done = tidy(dir.path(), FILE_NAME, 10, true, Duration::ZERO);
        assert!(done.compressed.is_empty());
        // With `never` every dated file is an old one.
        let done = tidy(dir.path(), FILE_NAME, 10, false, Duration::ZERO);
        assert_eq!(done.compressed.len(), 1);
    }

    #[test]
    fn retention_keeps_the_newest_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for day in 1..=5 {
            fs::write(d.join(format!("skillkernel.log.2020-01-0{day}.lz4")), "x").unwrap();
        }
        fs::write(d.join("skillkernel.log.2020-01-09-10"), "plain").unwrap();
        fs::write(d.join("skillkernel.log.2020-01-02.lz4.partial"), "half").unwrap();
        let done = tidy(d, FILE_NAME, 3, false, Duration::ZERO);
        assert!(done.errors.is_empty(), "{:?}", done.errors);
        assert_eq!(
            names(d),
            [
                "skillkernel.log.2020-01-04.lz4",
                "skillkernel.log.2020-01-05.lz4",
                "skillkernel.log.2020-01-09-10.lz4",
            ]
        );
    }

    #[test]
    fn audit_logs_moved_aside_are_compressed_and_pruned_and_the_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join(AUDIT_FILE), "live\n").unwrap();
        for ms in 1..=4 {
            fs::write(
                d.join(format!("{AUDIT_FILE}.2026-12-07-01-36-27-00{ms}")),
                "old\n",
            )
            .unwrap();
        }
        let done = tidy(d, AUDIT_FILE, 2, false, Duration::ZERO);
        assert!(done.errors.is_empty(), "{:?}", done.errors);
        assert_eq!(
            names(d),
            [
                "sandbox-audit.jsonl",
                "sandbox-audit.jsonl.2026-12-07-01-36-27-003.lz4",
                "sandbox-audit.jsonl.2026-12-07-01-36-27-004.lz4",
            ]
        );
    }

    #[test]
    fn a_failed_compression_keeps_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("skillkernel.log.2020-01-01"), "precious").unwrap();
        // A directory where the partial file would go makes the write fail
        // (permissions would not stop root).
        fs::create_dir(d.join("skillkernel.log.2020-01-01.lz4.partial")).unwrap();
        fs::write(d.join("skillkernel.log.2020-01-01.lz4.partial/x"), "").unwrap();
        let done = tidy(d, FILE_NAME, 10, false, Duration::ZERO);
        assert_eq!(done.errors.len(), 2, "{:?}", done.errors);
        assert_eq!(
            fs::read_to_string(d.join("skillkernel.log.2020-01-01")).unwrap(),
            "precious"
        );
        assert!(!d.join("skillkernel.log.2020-01-01.lz4").exists());
    }
}
