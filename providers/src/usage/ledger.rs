//! The usage files: `<dir>/usage-YYYY-MM.jsonl`, one [`UsageRecord`] per
//! line, in the month of the record's local day.
//!
//! Every kernel sharing the state directory appends to the same file; a
//! record is one `write` on a file opened for appending, so lines from two
//! kernels never interleave. Readers take complete lines only: a line still
//! being written is read on the next pass. Files older than
//! [`KEEP_MONTHS`] are removed when a ledger opens, so months of uptime
//! keep a year of history and no more.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{Datelike, Local, NaiveDate};

use super::UsageRecord;

/// Months of history kept, the current one included.
pub const KEEP_MONTHS: i32 = 13;

/// What priced calls have cost today, across every kernel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spent {
    pub total: f64,
    pub by_skill: HashMap<String, f64>,
}

/// Today's spend and how far into today's file it has read.
struct Today {
    day: NaiveDate,
    offset: u64,
    spent: Spent,
}

/// The ledger in one directory.
pub struct Ledger {
    dir: PathBuf,
    today: Mutex<Option<Today>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("dir", &self.dir).finish()
    }
}

/// The file a day's records go to.
fn month_file(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("usage-{:04}-{:02}.jsonl", day.year(), day.month()))
}

/// `(year, month)` of a ledger file's name.
fn month_of(name: &str) -> Option<(i32, u32)> {
    let stem = name.strip_prefix("usage-")?.strip_suffix(".jsonl")?;
    let (year, month) = stem.split_once('-')?;
    Some((year.parse().ok()?, month.parse().ok()?))
}

fn month_index(year: i32, month: u32) -> i32 {
    year * 12 + month as i32 - 1
}

/// The local day now.
pub fn today() -> NaiveDate {
    Local::now().date_naive()
}

/// Removes the files of months before the [`KEEP_MONTHS`] that end at
/// `now`'s.
fn prune(dir: &Path, now: NaiveDate) -> io::Result<()> {
    let oldest = month_index(now.year(), now.month()) - (KEEP_MONTHS - 1);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((y, m)) = name.to_str().and_then(month_of) else {
            continue;
        };
        if month_index(y, m) < oldest {
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), error = %e, "could not remove old usage file");
            }
        }
    }
    Ok(())
}

/// One complete line from `reader` into `line` (cleared first): `false` at
/// the end of the data or when the last line is still being written.
fn complete_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
    line.clear();
    let n = reader.read_until(b'\n', line)?;
    Ok(n > 0 && line.last() == Some(&b'\n'))
}

impl Ledger {
    /// Opens (creating) the ledger in `dir` and removes files older than
    /// [`KEEP_MONTHS`].
    pub fn open(dir: &Path) -> io::Result<Ledger> {
        fs::create_dir_all(dir)?;
        prune(dir, today())?;
        Ok(Ledger {
            dir: dir.to_owned(),
            today: Mutex::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `record` to its month's file.
    pub fn append(&self, record: &UsageRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(month_file(&self.dir, record.day))?;
        // One write, so kernels appending at once never interleave a line.
        file.write_all(&line)
    }

    /// What priced calls have cost today, everyone's records included:
    /// reads what was appended to today's file since the last call.
    pub fn spent_today(&self) -> io::Result<Spent> {
        let day = today();
        let mut guard = self.today.lock().unwrap_or_else(|p| p.into_inner());
        let state = match guard.as_mut() {
            Some(t) if t.day == day => t,
            previous => {
                // A new day (or the first call): a daemon up for months
                // keeps only a year of files.
                if previous.is_some() {
                    if let Err(e) = prune(&self.dir, day) {
                        tracing::warn!(dir = %self.dir.display(), error = %e, "could not prune the usage ledger");
                    }
                }
                guard.insert(Today {
                    day,
                    offset: 0,
                    spent: Spent::default(),
                })
            }
        };
        let path = month_file(&self.dir, day);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(state.spent.clone()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(state.offset))?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        // Stops at the end, or at a line another kernel is still writing
        // (read again next time, from its start).
        while complete_line(&mut reader, &mut line)? {
            state.offset += line.len() as u64;
            let Ok(record) = serde_json::from_slice::<UsageRecord>(&line) else {
                continue;
            };
            if let (true, Some(cost)) = (record.day == day, record.cost) {
                state.spent.total += cost;
                if let Some(skill) = record.skill {
                    *state.spent.by_skill.entry(skill).or_default() += cost;
                }
            }
        }
        Ok(state.spent.clone())
    }

    /// Calls `each` with every record from `since` (a local day) on, file
    /// by file, without holding them; returns how many lines could not be
    /// read.
    pub fn scan_since(
        &self,
        since: NaiveDate,
        mut each: impl FnMut(UsageRecord),
    ) -> io::Result<usize> {
        let first = month_index(since.year(), since.month());
        let mut files: Vec<(i32, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some((y, m)) = name.to_str().and_then(month_of) {
                if month_index(y, m) >= first {
                    files.push((month_index(y, m), entry.path()));
                }
            }
        }
        files.sort();
        let mut unreadable = 0;
        for (_, path) in files {
            let file = match File::open(&path) {
                Ok(file) => file,
                // Pruned by another kernel meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            while complete_line(&mut reader, &mut line)? {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                match serde_json::from_slice::<UsageRecord>(&line) {
                    Ok(r) if r.day >= since => each(r),
                    Ok(_) => {}
                    Err(_) => unreadable += 1,
                }
            }
        }
        Ok(unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(day: NaiveDate, skill: Option<&str>, cost: Option<f64>) -> UsageRecord {
        UsageRecord {
            at: format!("{day}T12:00:00+00:00"),
            day,
            session: "s".into(),
            skill: skill.map(str::to_owned),
            backend: "cloud".into(),
            model: "m".into(),
            profile: None,
            prompt_tokens: 10,
            completion_tokens: 20,
            first_token_ms: Some(5.0),
            total_ms: 50.0,
            finish_reason: "stop".into(),
            cached: false,
            cost,
        }
    }

    #[test]
    fn todays_spend_counts_priced_calls_of_today_from_every_writer() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let other_kernel = Ledger::open(dir.path()).unwrap();
        let day = today();
        // Another day of the same month's file.
        let other = day.with_day(if day.day() == 1 { 2 } else { 1 }).unwrap();
        ledger.append(&record(day, Some("t"), Some(0.5))).unwrap();
        ledger.append(&record(day, None, None)).unwrap();
        ledger.append(&record(other, None, Some(9.0))).unwrap();
        assert_eq!(ledger.spent_today().unwrap().total, 0.5);
        other_kernel
            .append(&record(day, Some("t"), Some(0.25)))
            .unwrap();
        let spent = ledger.spent_today().unwrap();
        assert_eq!(spent.total, 0.75);
        assert_eq!(spent.by_skill["t"], 0.75);
    }

    #[test]
    fn a_half_written_line_is_read_once_complete_and_junk_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let day = today();
        let mut r = record(day, Some("übersetzen"), Some(1.0));
        r.session = "sé".into();
        let line = serde_json::to_vec(&r).unwrap();
        // Cut inside the "é": another kernel is half way through its write.
        let cut = line.windows(2).position(|w| w == "é".as_bytes()).unwrap() + 1;
        let path = month_file(dir.path(), day);
        let mut start = b"not json\n".to_vec();
        start.extend_from_slice(&line[..cut]);
        fs::write(&path, start).unwrap();
        assert_eq!(ledger.spent_today().unwrap().total, 0.0);
        let mut rest = line[cut..].to_vec();
        rest.push(b'\n');
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&rest)
            .unwrap();
        assert_eq!(ledger.spent_today().unwrap().total, 1.0);
        let mut records = 0;
        let unreadable = ledger.scan_since(day, |_| records += 1).unwrap();
        assert_eq!((records, unreadable), (1, 1));
    }

    #[test]
    fn files_older_than_a_year_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let now = today();
        let old = NaiveDate::from_ymd_opt(now.year() - 2, 1, 1).unwrap();
        let recent = NaiveDate::from_ymd_opt(now.year() - 1, now.month(), 1).unwrap();
        for day in [old, recent] {
            fs::write(month_file(dir.path(), day), "").unwrap();
        }
        fs::write(dir.path().join("notes.txt"), "kept").unwrap();
        Ledger::open(dir.path()).unwrap();
        assert!(!month_file(dir.path(), old).exists());
        assert!(month_file(dir.path(), recent).exists());
        assert!(dir.path().join("notes.txt").exists());
    }
}
