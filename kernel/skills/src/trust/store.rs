//! The trust store: which skills the user trusted, against which digest.
//!
//! One JSON file in the user's state (`<state_dir>/skill-trust.json`),
//! never in a project: a repository cannot ship its own trust. Every
//! kernel on the state dir shares it. Reads are cached by the file's
//! identity (device, inode, mtime, size), so a check costs a `stat`;
//! writes take an exclusive `flock` on `skill-trust.json.lock`, re-read,
//! change, and replace the file atomically (mode 0600), so two kernels
//! trusting at once both land.
//!
//! A file that does not parse is never overwritten: every change is
//! refused with the path and the remedy until the user fixes or removes
//! it, and nothing is trusted meanwhile.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use skillkernel_stdx::{files, lock};

/// The file's layout version.
const VERSION: u32 = 1;

/// One trust decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// `name@version` when it was trusted.
    pub skill: String,
    /// The skill's digest (hex) it was trusted at.
    pub digest: String,
    /// What it was granted, as the prompt showed it.
    pub asks: Vec<String>,
    /// When (RFC 3339, UTC).
    pub trusted_at: String,
    /// How: `%skill trust`, `skillctl skill trust`, a signature's key …
    pub via: String,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    pub version: u32,
    /// By the skill's root (its folder, or a loose workflow's file),
    /// absolute and resolved.
    pub skills: BTreeMap<String, TrustRecord>,
}

/// The store cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the skill trust store {path} cannot be read: {reason}; fix it or remove it (every skill then asks to be trusted again)")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the skill trust store {path} cannot be written: {reason}; check that its folder is writable")]
    Unwritable { path: PathBuf, reason: String },
}

/// Identity of the file as read: a change of any part means read again.
type FileStamp = (u64, u64, i64, i64, u64);

/// The trust store at one path.
pub struct TrustStore {
    path: PathBuf,
    cached: Mutex<Option<(FileStamp, Arc<TrustFile>)>>,
}

impl TrustStore {
    pub fn new(path: impl Into<PathBuf>) -> TrustStore {
        TrustStore {
            path: path.into(),
            cached: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decisions, from the cache while the file is unchanged. A
    /// missing file is an empty store.
    pub fn read(&self) -> Result<Arc<TrustFile>, StoreError> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Arc::new(TrustFile::empty()))
            }
            Err(e) => return Err(self.unreadable(e.to_string())),
        };
        if let Some((seen, file)) = lock(&self.cached).as_ref() {
            if *seen == stamp {
                return Ok(Arc::clone(file));
            }
        }
        let file = Arc::new(self.parse()?);
        *lock(&self.cached) = Some((stamp, Arc::clone(&file)));
        Ok(file)
    }

    /// Changes the store under its lock: re-read, `change`, written back
    /// atomically. Refused when the file does not parse.
    pub fn update<T>(&self, change: impl FnOnce(&mut TrustFile) -> T) -> Result<T, StoreError> {
        let unwritable = |reason: String| StoreError::Unwritable {
            path: self.path.clone(),
            reason,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| unwritable(e.to_string()))?;
        }
        let lock_path = self.path.with_extension("json.lock");
        let guard = files::lock_exclusive(&lock_path, 0o600)
            .map_err(|e| unwritable(format!("{}: {e}", lock_path.display())))?;
        let mut file = match std::fs::metadata(&self.path) {
            Ok(_) => self.parse()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TrustFile::empty(),
            Err(e) => return Err(self.unreadable(e.to_string())),
        };
        let out = change(&mut file);
        let text = serde_json::to_string_pretty(&file).map_err(|e| unwritable(e.to_string()))?;
        files::replace(&self.path, format!("{text}\n").as_bytes(), 0o600)
            .map_err(|e| unwritable(e.to_string()))?;
        *lock(&self.cached) = None;
        drop(guard);
        Ok(out)
    }

    fn parse(&self) -> Result<TrustFile, StoreError> {
        let text =
            std::fs::read_to_string(&self.path).map_err(|e| self.unreadable(e.to_string()))?;
        let file: TrustFile =
            serde_json::from_str(&text).map_err(|e| self.unreadable(e.to_string()))?;
        if file.version != VERSION {
            return Err(self.unreadable(format!(
                "layout version {} (this build reads {VERSION})",
                file.version
            )));
        }
        Ok(file)
    }

    fn unreadable(&self, reason: String) -> StoreError {
        StoreError::Unreadable {
            path: self.path.clone(),
            reason,
        }
    }
}

impl TrustFile {
    fn empty() -> TrustFile {
        TrustFile {
            version: VERSION,
            skills: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(digest: &str) -> TrustRecord {
        TrustRecord {
            skill: "x@1.0.0".into(),
            digest: digest.into(),
            asks: vec!["network access: any host".into()],
            trusted_at: "2026-12-07T00:00:00Z".into(),
            via: "test".into(),
        }
    }

    #[test]
    fn decisions_round_trip_and_two_stores_on_one_file_see_each_other() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("skill-trust.json");
        let a = TrustStore::new(&path);
        let b = TrustStore::new(&path);
        assert!(a.read().unwrap().skills.is_empty());
        a.update(|f| f.skills.insert("/s/x".into(), record("aa")))
            .unwrap();
        b.update(|f| f.skills.insert("/s/y".into(), record("bb")))
            .unwrap();
        let seen = a.read().unwrap();
        assert_eq!(seen.skills.len(), 2, "{seen:?}");
        assert_eq!(seen.skills["/s/y"].digest, "bb");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_unreadable_store_is_reported_and_never_overwritten() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("skill-trust.json");
        std::fs::write(&path, "{ not json").unwrap();
        let store = TrustStore::new(&path);
        let err = store.read().unwrap_err().to_string();
        assert!(
            err.contains("cannot be read") && err.contains("remove it"),
            "{err}"
        );
        let err = store
            .update(|f| f.skills.insert("/s/x".into(), record("aa")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Unreadable { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
    }
}
