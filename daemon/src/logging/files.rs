//! The log file: [`LogFile`] writes `<dir>/skillkernel.log.<stamp>`, with
//! `<dir>/skillkernel.log` a symlink to the file being written, and starts
//! a new file when the period (`rotation`) turns or the file would grow
//! past `max_size_mb`. With `rotation = "never"` and no size limit,
//! `skillkernel.log` is the file itself.
//!
//! Stamps sort as text in the order files were started: a period's file is
//! `2026-12-07` (daily), `2026-12-07-13` (hourly) or `2026-12-07-13-05`
//! (minutely), UTC; a file started because the last grew too big is
//! stamped to the millisecond, `2026-12-07-13-05-22-123`, which sorts after
//! its period's first file and before the next period's.
//!
//! A line that cannot be written (a full disk) is dropped, never retried
//! and never blocks: the first failure of a stretch is said once on stderr
//! (the journal, under systemd), the file is reopened at most once a
//! second, and the first line that gets through again is followed by one
//! saying how many were lost. The [`Outlet`] counts both for `%status`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use skillkernel_stdx::outlet::Outlet;
use skillkernel_stdx::stamps;

use super::LogError;
use crate::config::{LogConfig, LogRotation};

/// The name operators look at: the live file or a symlink to it.
pub const FILE_NAME: &str = "skillkernel.log";

/// After a failed write, the file is reopened no more often than this.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// The rotation settings, shared by the writer thread, the maintenance
/// thread and SIGUSR1 reloads (which change them in place).
#[derive(Debug)]
pub struct RotationSettings {
    rotation: AtomicU8,
    /// 0: no size limit.
    max_bytes: AtomicU64,
    keep: AtomicUsize,
    /// The sandbox audit log's retention (its size limit is the kernel's).
    audit_keep: AtomicUsize,
}

impl RotationSettings {
    pub fn new(config: &LogConfig) -> Self {
        let settings = RotationSettings {
            rotation: AtomicU8::new(0),
            max_bytes: AtomicU64::new(0),
            keep: AtomicUsize::new(0),
            audit_keep: AtomicUsize::new(0),
        };
        settings.set(config);
        settings
    }

    /// Takes `config`'s rotation, size limit and retention.
    pub fn set(&self, config: &LogConfig) {
        self.rotation.store(rotation_code(config.rotation), Relaxed);
        self.max_bytes
            .store(config.max_size_bytes().unwrap_or(0), Relaxed);
        self.keep.store(config.keep, Relaxed);
        self.audit_keep.store(config.audit_keep, Relaxed);
    }

    pub fn rotation(&self) -> LogRotation {
        match self.rotation.load(Relaxed) {
            0 => LogRotation::Minutely,
            1 => LogRotation::Hourly,
            2 => LogRotation::Daily,
            _ => LogRotation::Never,
        }
    }

    fn max_bytes(&self) -> Option<u64> {
        Some(self.max_bytes.load(Relaxed)).filter(|&b| b > 0)
    }

    pub fn keep(&self) -> usize {
        self.keep.load(Relaxed)
    }

    pub fn audit_keep(&self) -> usize {
        self.audit_keep.load(Relaxed)
    }

    /// Whether files are stamped (and `skillkernel.log` is a symlink).
    pub fn stamped(&self) -> bool {
        self.rotation() != LogRotation::Never || self.max_bytes().is_some()
    }
}

fn rotation_code(rotation: LogRotation) -> u8 {
    match rotation {
        LogRotation::Minutely => 0,
        LogRotation::Hourly => 1,
        LogRotation::Daily => 2,
        LogRotation::Never => 3,
    }
}

/// The stamp of the period `now` is in; `None` without time rotation.
fn period(rotation: LogRotation, now: DateTime<Utc>) -> Option<String> {
    let format = match rotation {
        LogRotation::Minutely => "%Y-%m-%d-%H-%M",
        LogRotation::Hourly => "%Y-%m-%d-%H",
        LogRotation::Daily => "%Y-%m-%d",
        LogRotation::Never => return None,
    };
    Some(now.format(format).to_string())
}

/// When the period `now` is in ends; `None` without time rotation. Kept
/// with the open file, so a line costs a comparison, not a date format.
fn period_end(rotation: LogRotation, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::{DurationRound, TimeDelta};
    let length = match rotation {
        LogRotation::Minutely => TimeDelta::minutes(1),
        LogRotation::Hourly => TimeDelta::hours(1),
        LogRotation::Daily => TimeDelta::days(1),
        LogRotation::Never => return None,
    };
    Some(now.duration_trunc(length).ok()? + length)
}

/// Why a new file is opened.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Opening {
    /// First write, a layout change, or a reopen after a failed write:
    /// the file being written continues if it is still current.
    Continue,
    /// The period turned.
    NewPeriod,
    /// The file would grow past the size limit.
    TooBig,
}

/// The file being written.
struct Live {
    file: File,
    /// Its stamp; `None` when it is `skillkernel.log` itself.
    stamp: Option<String>,
    /// The rotation it was opened under, and when its period ends.
    rotation: LogRotation,
    period_ends: Option<DateTime<Utc>>,
    written: u64,
}

/// The log file appender; see the module docs. Runs on the non-blocking
/// writer's thread.
pub(super) struct LogFile {
    dir: PathBuf,
    settings: Arc<RotationSettings>,
    live: Option<Live>,
    outlet: Arc<Outlet>,
    /// Called after each rotation (wakes the maintenance thread).
    rotated: Box<dyn Fn() + Send>,
    /// When and why the last open or write failed (the file is closed
    /// then, and reopened after a pause).
    failed: Option<(Instant, String)>,
    /// Lines are JSON objects (`format = "json"`).
    json: bool,
}

impl LogFile {
    /// Opens the log in `dir` (created if missing).
    pub(super) fn open(
        dir: &Path,
        json: bool,
        settings: Arc<RotationSettings>,
        outlet: Arc<Outlet>,
        rotated: Box<dyn Fn() + Send>,
    ) -> Result<LogFile, LogError> {
        fs::create_dir_all(dir).map_err(|source| LogError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        let mut log = LogFile {
            dir: dir.to_owned(),
            settings,
            live: None,
            outlet,
            rotated,
            failed: None,
            json,
        };
        log.roll(Utc::now(), Opening::Continue)
            .map_err(|e| LogError::Open {
                dir: dir.to_owned(),
                message: e.to_string(),
            })?;
        Ok(log)
    }

    /// Whether the next `len` bytes go to a new file, and why.
    fn due(&self, now: DateTime<Utc>, len: usize) -> Option<Opening> {
        let Some(live) = &self.live else {
            return Some(Opening::Continue);
        };
        let stamped = self.settings.stamped();
        if stamped != live.stamp.is_some() {
            return Some(Opening::Continue);
        }
        let rotation = self.settings.rotation();
        let period_over = live.period_ends.is_some_and(|end| now >= end);
        if stamped && (rotation != live.rotation || period_over) {
            return Some(Opening::NewPeriod);
        }
        match self.settings.max_bytes() {
            Some(max) if live.written > 0 && live.written + len as u64 > max => {
                Some(Opening::TooBig)
            }
            _ => None,
        }
    }

    /// Opens the file the next lines go to.
    fn roll(&mut self, now: DateTime<Utc>, why: Opening) -> io::Result<()> {
        let had_file = self.live.is_some();
        let previous = self.live.take().and_then(|live| live.stamp);
        let stamped = self.settings.stamped();
        adopt_previous_layout(&self.dir, stamped)?;
        let rotation = self.settings.rotation();
        let period = period(rotation, now);
        // The file written last: a new one must sort after it.
        let current = current_file(&self.dir, FILE_NAME).and_then(|name| {
            name.strip_prefix(&format!("{FILE_NAME}."))
                .map(str::to_owned)
        });
        let after = previous.or_else(|| current.clone());
        let stamp = if !stamped {
            None
        } else {
            Some(match why {
                Opening::TooBig => fresh_stamp(&self.dir, None, after.as_deref(), now),
                Opening::NewPeriod => fresh_stamp(&self.dir, period.clone(), after.as_deref(), now),
                Opening::Continue => {
                    // The file being written goes on if it belongs to this
                    // period (with no time rotation, any period).
                    let continuing = current.filter(|stamp| match &period {
                        Some(p) => stamp.starts_with(p.as_str()),
                        None => true,
                    });
                    match continuing {
                        Some(stamp) => stamp,
                        None => fresh_stamp(&self.dir, period.clone(), after.as_deref(), now),
                    }
                }
            })
        };
        let name = match &stamp {
            Some(stamp) => format!("{FILE_NAME}.{stamp}"),
            None => FILE_NAME.to_owned(),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(&name))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        if stamp.is_some() {
            point_symlink(&self.dir, &name)?;
        }
        self.live = Some(Live {
            file,
            stamp,
            rotation,
            period_ends: period_end(rotation, now),
            written,
        });
        if had_file && why != Opening::Continue {
            (self.rotated)();
        }
        Ok(())
    }

    /// Writes one formatted line (or batch of them).
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let now = Utc::now();
        if let Some(why) = self.due(now, line.len()) {
            if let Some((at, cause)) = &self.failed {
                if self.live.is_none() && at.elapsed() < REOPEN_EVERY {
                    return Err(io::Error::other(cause.clone()));
                }
            }
            if let Err(e) = self.roll(now, why) {
                self.failed = Some((Instant::now(), e.to_string()));
                return Err(e);
            }
        }
        let Some(live) = self.live.as_mut() else {
            return Err(io::Error::other("the log file is not open"));
        };
        match live.file.write_all(line) {
            Ok(()) => {
                live.written += line.len() as u64;
                self.failed = None;
                Ok(())
            }
            Err(e) => {
                // Closed, so the next line past the pause reopens it.
                self.live = None;
                self.failed = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }
}

impl Write for LogFile {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        match self.write_line(line) {
            Ok(()) => {
                if let Some((lost, why)) = self.outlet.delivered(1) {
                    let notice = lost_notice(self.json, lost, &why);
                    let _ = self.write_line(notice.as_bytes());
                }
            }
            Err(e) => {
                if self.outlet.dropped(1, &e.to_string()) {
                    // The log cannot say it: stderr (the journal) can.
                    eprintln!(
                        "skillkernel: cannot write the log file in {}: {e}; log lines are dropped until it can (see %status)",
                        self.dir.display()
                    );
                }
            }
        }
        // Never an error: the logging path must not fail or retry.
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(live) = self.live.as_mut() {
            let _ = live.file.flush();
        }
        Ok(())
    }
}

/// The line that says lines were lost, in the log's format.
fn lost_notice(json: bool, lost: u64, why: &str) -> String {
    let timestamp = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let message = format!("{lost} log lines were lost ({why})");
    if json {
        let line = serde_json::json!({
            "timestamp": timestamp,
            "level": "WARN",
            "fields": {"message": message, "lost": lost},
            "target": "skillkernel::logging",
        });
        format!("{line}\n")
    } else {
        format!("{timestamp}  WARN skillkernel::logging: {message}\n")
    }
}

/// The stamp of a new file: `preferred` (a period's) when no file of that
/// name, plain or compressed, exists and it sorts after `after` (the file
/// written before); otherwise a millisecond stamp, also after `after`. A
/// name is never reused, so no compressed file is ever overwritten and the
/// maintenance never takes the live file for a rotated one.
fn fresh_stamp(
    dir: &Path,
    preferred: Option<String>,
    after: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let sorts_after = |stamp: &str| after.is_none_or(|a| stamp > a);
    if let Some(stamp) = preferred.filter(|p| sorts_after(p) && !stamps::taken(dir, FILE_NAME, p)) {
        return stamp;
    }
    let stamp = stamps::free(dir, FILE_NAME, now);
    match after {
        // The clock went back: still after the last file.
        Some(a) if !sorts_after(&stamp) => unique_stamp_after(dir, a),
        _ => stamp,
    }
}

/// `<after>-1`, `<after>-2` …: the first free stamp sorting after `after`.
fn unique_stamp_after(dir: &Path, after: &str) -> String {
    (1..)
        .map(|n| format!("{after}-{n}"))
        .find(|stamp| !stamps::taken(dir, FILE_NAME, stamp))
        .unwrap_or_else(|| after.to_owned())
}

/// Points `skillkernel.log` at `name` (relative, so the directory can
/// move), replacing the old link in one rename.
fn point_symlink(dir: &Path, name: &str) -> io::Result<()> {
    let link = dir.join(FILE_NAME);
    if fs::read_link(&link).is_ok_and(|target| target == Path::new(name)) {
        return Ok(());
    }
    let temporary = dir.join(format!(".{FILE_NAME}.link"));
    let _ = fs::remove_file(&temporary);
    std::os::unix::fs::symlink(name, &temporary)?;
    fs::rename(&temporary, &link)
}

/// Makes `skillkernel.log` fit the layout: stamped files replace a plain
/// `skillkernel.log` with their symlink, so a plain file from an earlier
/// run is renamed to a stamped (rotated) name instead of lost; a plain
/// layout must not append through a leftover symlink into an old file.
fn adopt_previous_layout(dir: &Path, stamped: bool) -> io::Result<()> {
    let live = dir.join(FILE_NAME);
    let Ok(meta) = fs::symlink_metadata(&live) else {
        return Ok(());
    };
    if !stamped {
        if meta.file_type().is_symlink() {
            fs::remove_file(&live)?;
        }
    } else if meta.is_file() {
        let modified = meta.modified()?;
        // Milliseconds make the name unique and sort it by time.
        let stamp = stamps::free(dir, FILE_NAME, DateTime::<Utc>::from(modified));
        fs::rename(&live, dir.join(format!("{FILE_NAME}.{stamp}")))?;
    }
    Ok(())
}

/// The name of the file `<dir>/<base>` points at, when it is a symlink
/// (the stamped file being written).
pub(super) fn current_file(dir: &Path, base: &str) -> Option<String> {
    let target: PathBuf = fs::read_link(dir.join(base)).ok()?;
    Some(target.file_name()?.to_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests::names;

    fn config(rotation: LogRotation, max_size_mb: Option<f64>) -> LogConfig {
        LogConfig {
            rotation,
            max_size_mb,
            ..LogConfig::default()
        }
    }

    fn log_file(
        dir: &Path,
        config: &LogConfig,
    ) -> (LogFile, Arc<Outlet>, std::sync::mpsc::Receiver<()>) {
        let outlet = Arc::new(Outlet::new("log", dir.display().to_string()));
        let (tx, rx) = std::sync::mpsc::channel();
        let settings = Arc::new(RotationSettings::new(config));
        let rotated = Box::new(move || {
            let _ = tx.send(());
        });
        let log = LogFile::open(dir, false, settings, outlet.clone(), rotated).unwrap();
        (log, outlet, rx)
    }

    #[test]
    fn a_plain_log_from_a_never_run_is_kept_as_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "old run\n").unwrap();
        let _log = log_file(dir.path(), &config(LogRotation::Daily, None));
        let kept: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| fs::read_to_string(dir.path().join(n)).ok().as_deref() == Some("old run\n"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].starts_with("skillkernel.log.2"), "{kept:?}");
        assert!(current_file(dir.path(), FILE_NAME).is_some());
    }

    #[test]
    fn the_live_name_is_a_symlink_to_the_period_file_when_rotating() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, ..) = log_file(dir.path(), &config(LogRotation::Hourly, None));
        log.write_all(b"one line\n").unwrap();
        let current = current_file(dir.path(), FILE_NAME).unwrap();
        let hour = Utc::now().format("%Y-%m-%d-%H").to_string();
        assert_eq!(current, format!("skillkernel.log.{hour}"));
        assert_eq!(
            fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "one line\n"
        );
    }

    #[test]
    fn a_file_that_would_pass_the_size_limit_is_rotated_and_lines_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        // 1,048 bytes (0.001 MiB): ten 100-byte lines fit.
        let (mut log, outlet, rotated) =
            log_file(dir.path(), &config(LogRotation::Daily, Some(0.001)));
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..35 {
            log.write_all(line.as_bytes()).unwrap();
        }
        let files: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| n.starts_with("skillkernel.log."))
            .collect();
        assert_eq!(
            files.len(),
            4,
            "3,500 bytes in files of at most 1,048: {files:?}"
        );
        for name in &files {
            let text = fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(
                text.len() <= 1048 && text.len().is_multiple_of(100),
                "{name}: {}",
                text.len()
            );
        }
        // Sorted by name is the order they were written in: the newest is live.
        assert_eq!(
            current_file(dir.path(), FILE_NAME).as_deref(),
            files.last().map(String::as_str)
        );
        assert_eq!(rotated.try_iter().count(), 3);
        assert_eq!(outlet.status().delivered, 35);
    }

    #[test]
    fn a_period_ends_where_the_next_stamp_begins() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let now = at("2026-12-07T13:05:22.123Z");
        for (rotation, end) in [
            (LogRotation::Minutely, "2026-12-07T13:06:00Z"),
            (LogRotation::Hourly, "2026-12-07T14:00:00Z"),
            (LogRotation::Daily, "2026-12-08T00:00:00Z"),
        ] {
            let end = at(end);
            assert_eq!(period_end(rotation, now), Some(end));
            assert_ne!(period(rotation, end), period(rotation, now));
            assert_eq!(
                period(rotation, end - chrono::TimeDelta::milliseconds(1)),
                period(rotation, now)
            );
        }
        assert_eq!(period_end(LogRotation::Never, now), None);
    }

    #[test]
    fn a_period_whose_file_was_already_compressed_gets_a_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let today = Utc::now().format("%Y-%m-%d").to_string();
        let compressed = dir.path().join(format!("skillkernel.log.{today}.lz4"));
        fs::write(&compressed, "earlier today").unwrap();
        let (mut log, ..) = log_file(dir.path(), &config(LogRotation::Daily, None));
        log.write_all(b"now\n").unwrap();
        let live = current_file(dir.path(), FILE_NAME).unwrap();
        assert!(
            live.starts_with(&format!("skillkernel.log.{today}-")),
            "{live}"
        );
        assert_eq!(fs::read_to_string(&compressed).unwrap(), "earlier today");
    }

    #[test]
    fn lines_that_cannot_be_written_are_counted_and_then_said_lost() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("skillkernel.log.{}", Utc::now().format("%Y-%m-%d"));
        // Today's file, being written, is on a "disk" that is always full.
        std::os::unix::fs::symlink("/dev/full", dir.path().join(&name)).unwrap();
        std::os::unix::fs::symlink(&name, dir.path().join(FILE_NAME)).unwrap();
        let (mut log, outlet, _) = log_file(dir.path(), &config(LogRotation::Daily, None));
        for _ in 0..3 {
            log.write_all(b"lost\n").unwrap();
        }
        let status = outlet.status();
        assert_eq!(status.dropped, 3);
        assert!(
            status.failing.unwrap().contains("No space left"),
            "{:?}",
            outlet.status()
        );
        fs::remove_file(dir.path().join(&name)).unwrap();
        std::thread::sleep(REOPEN_EVERY);
        log.write_all(b"kept\n").unwrap();
        let text = fs::read_to_string(dir.path().join(&name)).unwrap();
        assert_eq!(text.lines().next(), Some("kept"), "{text}");
        assert!(
            text.contains("3 log lines were lost (No space left on device"),
            "{text}"
        );
        assert_eq!(outlet.status().failing, None);
    }
}
