//! The sandbox's audit log: one JSON object per line, appended to
//! `<state_dir>/sandbox-audit.jsonl`, for every security event — a denied
//! path or network access, a limit kill, a timeout, a set-up failure, a
//! permission grant (a skill allowed more than the defaults) and a Landlock
//! that could not be fully enforced (the last two once per skill version).
//!
//! ```json
//! {"time":"2026-11-21T22:40:01.123Z","event":"denied_path","source":"skill",
//!  "skill":"reader","version":"1.0.0","path":"/etc/shadow",
//!  "detail":"cat: /etc/shadow: Permission denied"}
//! ```
//!
//! Every event is also a `tracing` warning, so an operator sees it in the
//! daemon log. Writing the log must never fail a run: an unwritable log is
//! reported once and the events go to the daemon log only. Values of
//! environment variables are never written, only names.
//!
//! With a size limit ([`AuditLog::set_max_bytes`]), a line that would take
//! the file past it first moves the file aside to
//! `sandbox-audit.jsonl.<UTC stamp to the millisecond>` (the daemon's log
//! maintenance compresses and prunes those), so no event is split or lost.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};

/// An event's fields from a `json!` object (anything else: none).
pub fn fields_of(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The log file's name inside the state directory.
pub const AUDIT_FILE: &str = "sandbox-audit.jsonl";

/// Who ran the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// `cell` (a `!command`), `skill` (a command skill) or `session`.
    pub source: &'static str,
    /// The skill's name and version; `None` for cells.
    pub skill: Option<String>,
    pub version: Option<String>,
    /// The skill's own folder: readable without it being a grant.
    #[serde(skip)]
    pub own_dir: Option<std::path::PathBuf>,
}

impl Subject {
    pub fn cell() -> Self {
        Subject {
            source: "cell",
            skill: None,
            version: None,
            own_dir: None,
        }
    }

    pub fn skill(source: &'static str, name: &str, version: &str) -> Self {
        Subject {
            source,
            skill: Some(name.to_owned()),
            version: Some(version.to_owned()),
            own_dir: None,
        }
    }
}

/// The audit log (or, without a state directory, the daemon log only).
pub struct AuditLog {
    path: Option<PathBuf>,
    /// The open file and how many bytes it holds.
    file: Mutex<Option<(File, u64)>>,
    /// Rotate before passing this size; 0: never.
    max_bytes: AtomicU64,
    /// A failed rotation is said once, not with every event.
    rotate_failed: AtomicBool,
    /// `skill@version:event:key` already logged by [`AuditLog::record_once`].
    seen: Mutex<HashSet<String>>,
}

impl AuditLog {
    /// Appends to `path` (created with mode 0600 on first use); `None`
    /// logs through `tracing` only.
    pub fn new(path: Option<PathBuf>) -> Self {
        AuditLog {
            path,
            file: Mutex::new(None),
            max_bytes: AtomicU64::new(0),
            rotate_failed: AtomicBool::new(false),
            seen: Mutex::new(HashSet::new()),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Rotates the file before it would pass `max_bytes` (`None`: never).
    /// Takes effect with the next event.
    pub fn set_max_bytes(&self, max_bytes: Option<u64>) {
        self.max_bytes
            .store(max_bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// Records `event` for `subject`, with `fields` (string keys to JSON).
    pub fn record(&self, event: &str, subject: &Subject, fields: Map<String, Value>) {
        let mut entry = Map::new();
        entry.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        entry.insert("event".into(), event.into());
        entry.insert("source".into(), subject.source.into());
        if let Some(skill) = &subject.skill {
            entry.insert("skill".into(), skill.clone().into());
        }
        if let Some(version) = &subject.version {
            entry.insert("version".into(), version.clone().into());
        }
        entry.extend(fields);
        let line = Value::Object(entry).to_string();
        tracing::warn!(target: "skillkernel::audit", "{line}");
        self.append(&line);
    }

    /// Records a grant the first time `subject` uses it.
    pub fn record_grant_once(&self, subject: &Subject, grant: &str, fields: Map<String, Value>) {
        let mut fields = fields;
        fields.insert("grant".into(), grant.into());
        self.record_once("permission_granted", grant, subject, fields);
    }

    /// Records `event` the first time it happens to `subject` (per `key`):
    /// what holds for every run of a skill is logged once, not per run.
    pub fn record_once(
        &self,
        event: &str,
        key: &str,
        subject: &Subject,
        fields: Map<String, Value>,
    ) {
        let key = format!(
            "{}@{}:{event}:{key}",
            subject.skill.as_deref().unwrap_or("cell"),
            subject.version.as_deref().unwrap_or("")
        );
        if skillkernel_stdx::lock(&self.seen).insert(key) {
            self.record(event, subject, fields);
        }
    }

    fn append(&self, line: &str) {
        let Some(path) = &self.path else { return };
        let line = format!("{line}\n");
        let mut file = skillkernel_stdx::lock(&self.file);
        // Another kernel sharing the state dir may have moved the file
        // aside: follow the name, not the old file.
        if file.as_ref().is_some_and(|(f, _)| !is_at(f, path)) {
            *file = None;
        }
        if file.is_none() {
            *file = self.open_counted(path);
        }
        let max = self.max_bytes.load(Ordering::Relaxed);
        if let Some((_, written)) = file.as_ref() {
            if max > 0 && *written > 0 && written + line.len() as u64 > max {
                *file = None;
                match rotate(path) {
                    Ok(()) => self.rotate_failed.store(false, Ordering::Relaxed),
                    Err(e) => {
                        if !self.rotate_failed.swap(true, Ordering::Relaxed) {
                            tracing::error!(path = %path.display(), error = %e, "cannot rotate the sandbox audit log; it keeps growing");
                        }
                    }
                }
                *file = self.open_counted(path);
            }
        }
        if let Some((f, written)) = file.as_mut() {
            match f.write_all(line.as_bytes()) {
                Ok(()) => *written += line.len() as u64,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the sandbox audit log");
                    *file = None;
                }
            }
        }
    }

    /// Opens `path` with the size it has.
    fn open_counted(&self, path: &Path) -> Option<(File, u64)> {
        match open(path) {
            Ok(f) => {
                let written = f.metadata().map(|m| m.len()).unwrap_or(0);
                Some((f, written))
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot open the sandbox audit log; events go to the daemon log only");
                None
            }
        }
    }
}

/// Whether `file` is still the one at `path`.
fn is_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Moves `path` aside to `path.<stamp>`, a name no file has yet.
fn rotate(path: &Path) -> std::io::Result<()> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(std::io::Error::other("the audit log path has no file name"));
    };
    let stamp = skillkernel_stdx::stamps::free(dir, base, chrono::Utc::now());
    std::fs::rename(path, dir.join(format!("{base}.{stamp}")))
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_as_json_lines_and_grants_logged_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let log = AuditLog::new(Some(path.clone()));
        let who = Subject::skill("skill", "reader", "1.0.0");
        let mut fields = Map::new();
        fields.insert("path".into(), "/etc/shadow".into());
        log.record("denied_path", &who, fields);
        log.record_grant_once(&who, "network", Map::new());
        log.record_grant_once(&who, "network", Map::new());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["event"], "denied_path");
        assert_eq!(lines[0]["skill"], "reader");
        assert_eq!(lines[0]["version"], "1.0.0");
        assert_eq!(lines[0]["path"], "/etc/shadow");
        assert_eq!(lines[1]["event"], "permission_granted");
        assert_eq!(lines[1]["grant"], "network");
    }

    #[test]
    fn a_full_audit_log_is_moved_aside_whole_before_the_line_that_would_overflow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let log = AuditLog::new(Some(path.clone()));
        log.set_max_bytes(Some(600));
        let who = Subject::cell();
        for i in 0..20 {
            let mut fields = Map::new();
            fields.insert("n".into(), i.into());
            log.record("denied_path", &who, fields);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{files:?}");
        let mut seen = Vec::new();
        // The live file sorts first (shortest name); then oldest to newest.
        files.rotate_left(1);
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(text.len() <= 600, "{}: {}", file.display(), text.len());
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).expect("whole JSON lines");
                seen.push(v["n"].as_u64().unwrap());
            }
        }
        assert_eq!(seen, (0..20).collect::<Vec<u64>>(), "none lost, in order");
    }

    #[test]
    fn a_log_moved_aside_by_another_kernel_is_followed_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let ours = AuditLog::new(Some(path.clone()));
        let theirs = AuditLog::new(Some(path.clone()));
        ours.record("denied_path", &Subject::cell(), Map::new());
        theirs.set_max_bytes(Some(1));
        theirs.record("denied_path", &Subject::cell(), Map::new());
        theirs.record("limit_killed", &Subject::cell(), Map::new());
        // `theirs` moved the file aside; our next event goes to the new one.
        ours.record("timed_out", &Subject::cell(), Map::new());
        let live = std::fs::read_to_string(&path).unwrap();
        assert!(live.contains("timed_out"), "{live}");
    }

    #[test]
    fn a_degraded_landlock_is_its_own_event_logged_once_per_skill_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let log = AuditLog::new(Some(path.clone()));
        let who = Subject::skill("skill", "reader", "1.0.0");
        for _ in 0..2 {
            log.record_once("landlock_degraded", "partially_enforced", &who, Map::new());
        }
        let newer = Subject::skill("skill", "reader", "1.1.0");
        log.record_once(
            "landlock_degraded",
            "partially_enforced",
            &newer,
            Map::new(),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{text}");
        assert!(events.iter().all(|e| e["event"] == "landlock_degraded"));
        assert_eq!(events[1]["version"], "1.1.0");
    }
}
