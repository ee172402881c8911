//! The lock file: what was installed from where, at which digest.
//!
//! `<user skill dir>/skills.lock.json`, one entry per installed skill
//! folder. It carries a blake3 `checksum` of its entries as written, so a
//! hand edit is noticed (and refused, with the remedy) rather than
//! trusted: `update` re-fetches from the source an entry names. Changes
//! take an exclusive `flock` on `skills.lock.json.lock` and replace the
//! file atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skillkernel_stdx::files;

use crate::source::Source;
use crate::InstallError;

/// The lock file's name in the user's skill directory.
pub const LOCK_FILE: &str = "skills.lock.json";
const VERSION: u32 = 1;

/// One installed skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    /// `name@version` when installed.
    pub skill: String,
    pub source: Source,
    /// The subfolder of the source the skill came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    /// The commit a git source resolved to; the URL or path otherwise.
    pub resolved: String,
    /// The skill's digest (hex) as installed.
    pub digest: String,
    pub installed_at: String,
    /// The minisign public key (base64) whose signature verified, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: u32,
    /// blake3 of `skills` as compact JSON.
    checksum: String,
    /// By folder name in the user's skill directory.
    skills: BTreeMap<String, LockEntry>,
}

fn checksum(skills: &BTreeMap<String, LockEntry>) -> String {
    let text = serde_json::to_string(skills).unwrap_or_default();
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// The lock file of one skill directory.
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    pub fn new(user_dir: &Path) -> Lock {
        Lock {
            path: user_dir.join(LOCK_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry; none when there is no file yet.
    pub fn read(&self) -> Result<BTreeMap<String, LockEntry>, InstallError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.broken(e.to_string())),
        };
        let file: LockFile = serde_json::from_str(&text).map_err(|e| self.broken(e.to_string()))?;
        if file.version != VERSION {
            return Err(self.broken(format!(
                "layout version {} (this build reads {VERSION})",
                file.version
            )));
        }
        if checksum(&file.skills) != file.checksum {
            return Err(
                self.broken("its entries do not match its checksum: it was edited by hand".into())
            );
        }
        Ok(file.skills)
    }

    /// Changes the entries under the lock; written back atomically.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, LockEntry>) -> T,
    ) -> Result<T, InstallError> {
        let io = |e: std::io::Error| InstallError::io(&self.path, e);
        let guard =
            files::lock_exclusive(&self.path.with_extension("json.lock"), 0o644).map_err(io)?;
        let mut skills = self.read()?;
        let out = change(&mut skills);
        let file = LockFile {
            version: VERSION,
            checksum: checksum(&skills),
            skills,
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
        files::replace(&self.path, format!("{text}\n").as_bytes(), 0o644).map_err(io)?;
        drop(guard);
        Ok(out)
    }

    fn broken(&self, reason: String) -> InstallError {
        InstallError::Lock {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LockEntry {
        LockEntry {
            skill: "fetch@1.0.0".into(),
            source: Source::Folder {
                path: "/src/fetch".into(),
            },
            subdir: None,
            resolved: "/src/fetch".into(),
            digest: "ab".into(),
            installed_at: "2026-12-07T00:00:00Z".into(),
            signed_by: None,
        }
    }

    #[test]
    fn entries_round_trip_and_a_hand_edit_is_refused_with_the_remedy() {
        let t = tempfile::tempdir().unwrap();
        let lock = Lock::new(t.path());
        assert!(lock.read().unwrap().is_empty());
        lock.update(|s| s.insert("fetch".into(), entry())).unwrap();
        assert_eq!(lock.read().unwrap()["fetch"], entry());
        let text = std::fs::read_to_string(lock.path()).unwrap();
        std::fs::write(lock.path(), text.replace("/src/fetch", "/elsewhere")).unwrap();
        let e = lock.read().unwrap_err().to_string();
        assert!(e.contains("edited by hand") && e.contains(LOCK_FILE), "{e}");
        assert!(
            lock.update(|s| s.clear()).is_err(),
            "never rewritten over an edit"
        );
    }
}
