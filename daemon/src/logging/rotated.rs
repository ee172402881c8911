//! Rotated log files: compressed with lz4 (frame format, `.lz4`) and pruned
//! to the newest `[log] keep`, by one background thread at start and then
//! every minute — never on the logging path.
//!
//! A rotated file is `skillkernel.log.<date>` with a date older than the
//! file being written (the appender's dates sort as text). A file is
//! replaced by its `.lz4` only once the compressed copy is complete, synced
//! and renamed into place; a crash leaves at worst a `.lz4.partial`, which
//! the next pass deletes, and the original.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use thiserror::Error;

use super::files::{self, FILE_NAME};

/// How often the thread looks for newly rotated files.
const INTERVAL: Duration = Duration::from_secs(60);

const COMPRESSED: &str = ".lz4";
const PARTIAL: &str = ".lz4.partial";

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

/// The background thread; it stops when this is dropped.
pub(super) struct Maintenance {
    _stop: mpsc::Sender<()>,
}

impl Maintenance {
    /// Starts the thread; its first pass runs at once.
    pub(super) fn start(dir: PathBuf, keep: usize, rotating: bool) -> io::Result<Maintenance> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("skillkernel-logs".into())
            .spawn(move || loop {
                let done = tidy(&dir, keep, rotating);
                for path in &done.compressed {
                    tracing::debug!(path = %path.display(), "rotated log compressed");
                }
                for path in &done.deleted {
                    tracing::info!(path = %path.display(), keep, "old log deleted");
                }
                for error in &done.errors {
                    tracing::warn!("{error}");
                }
                // A message or a dropped sender both mean stop.
                if !matches!(
                    stopped.recv_timeout(INTERVAL),
                    Err(RecvTimeoutError::Timeout)
                ) {
                    return;
                }
            })?;
        Ok(Maintenance { _stop: stop })
    }
}

/// A log file in the directory, by the date in its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rotated {
    date: String,
    compressed: bool,
}

impl Rotated {
    fn name(&self) -> String {
        let suffix = if self.compressed { COMPRESSED } else { "" };
        format!("{FILE_NAME}.{}{suffix}", self.date)
    }
}

/// `2024-05-01`, `2024-05-01-13`, `2024-05-01-13-05`: digits and dashes.
fn is_date(text: &str) -> bool {
    text.len() >= 10
        && text.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// One pass: deletes stale partial files, compresses rotated files, then
/// deletes all but the newest `keep` rotated files. `rotating` is false
/// with `rotation = "never"`, where no dated file is being written.
pub fn tidy(dir: &Path, keep: usize, rotating: bool) -> Tidied {
    let mut done = Tidied::default();
    // While the appender swaps its symlink the live file is unknown, and
    // only already-compressed files are touched.
    let current = if rotating {
        files::current_file(dir)
    } else {
        None
    };
    let is_rotated = |date: &str| match &current {
        Some(current) => current
            .strip_prefix(&format!("{FILE_NAME}."))
            .is_some_and(|live| date < live),
        None => !rotating,
    };
    let found = match scan(dir, &mut done) {
        Ok(found) => found,
        Err(e) => {
            done.errors.push(e.to_string());
            return done;
        }
    };
    let mut rotated = Vec::new();
    for file in found {
        if file.compressed {
            rotated.push(file);
        } else if is_rotated(&file.date) {
            let path = dir.join(file.name());
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
                .name(),
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

/// The dated files in `dir`; stale `.lz4.partial` files are deleted.
fn scan(dir: &Path, done: &mut Tidied) -> Result<Vec<Rotated>, TidyError> {
    let entries = fs::read_dir(dir).map_err(|source| TidyError::List {
        dir: dir.to_owned(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(FILE_NAME)?.strip_prefix('.'))
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
    use std::io::Read;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

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
        let done = tidy(d, 10, true);
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
        let done = tidy(dir.path(), 10, true);
        assert!(done.compressed.is_empty());
        // With `never` every dated file is an old one.
        let done = tidy(dir.path(), 10, false);
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
        let done = tidy(d, 3, false);
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
    fn a_failed_compression_keeps_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("skillkernel.log.2020-01-01"), "precious").unwrap();
        // A directory where the partial file would go makes the write fail
        // (permissions would not stop root).
        fs::create_dir(d.join("skillkernel.log.2020-01-01.lz4.partial")).unwrap();
        fs::write(d.join("skillkernel.log.2020-01-01.lz4.partial/x"), "").unwrap();
        let done = tidy(d, 10, false);
        assert_eq!(done.errors.len(), 2, "{:?}", done.errors);
        assert_eq!(
            fs::read_to_string(d.join("skillkernel.log.2020-01-01")).unwrap(),
            "precious"
        );
        assert!(!d.join("skillkernel.log.2020-01-01.lz4").exists());
    }
}
