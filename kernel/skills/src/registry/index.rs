//! The persisted index: what discovery learnt about each manifest, so a
//! restart with hundreds of unchanged skills only stats them.
//!
//! One sled database at the path the caller gives
//! (`<state_dir>/skills-index`):
//!
//! | tree        | key                       | value                                   |
//! |-------------|---------------------------|-----------------------------------------|
//! | `meta`      | `format`                  | [`FORMAT`] ‖ the crate version          |
//! | `manifests` | the manifest path (bytes) | JSON [`IndexEntry`]: mtime, size, blake3, header |
//! | `disabled`  | `name@version`            | the reason (UTF-8)                      |
//!
//! A different `format` (another build) clears `manifests`: headers are
//! re-read rather than trusted across parser changes. The index is never
//! fatal: [`Index::open`] failing (locked by another process, corrupt,
//! unwritable) or any later error is logged once, and the registry carries
//! on without it ([`IndexHandle`]); so is a panic inside sled (it has a
//! few on corrupt data). It never decides what a file holds;
//! the scan does.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::SkillHeader;
use skillkernel_stdx::lock;

/// Bumped when [`IndexEntry`] or the header's meaning changes.
const FORMAT: &str = "skills-index-1";

/// What is known of one manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub stamp: Stamp,
    pub header: SkillHeader,
}

/// A file's identity: mtime and size to skip reading it, the content hash
/// to recognise a touched but identical file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
    pub size: u64,
    pub blake3: [u8; 32],
}

impl Stamp {
    /// Whether the file's mtime and size are still these.
    pub fn same_stat(&self, mtime_ns: u128, size: u64) -> bool {
        self.mtime_ns == mtime_ns && self.size == size
    }
}

/// The open index.
pub struct Index {
    path: PathBuf,
    db: sled::Db,
    manifests: sled::Tree,
    disabled: sled::Tree,
}

impl Index {
    /// Opens (or creates) the index at `path`. Blocks on file I/O.
    pub fn open(path: &Path) -> Result<Index, String> {
        let fail = |e: &dyn std::fmt::Display| {
            format!("cannot open the skill index {}: {e}", path.display())
        };
        let config = sled::Config::new().path(path).cache_capacity(4 << 20);
        let db = skillkernel_stdx::sled_open::open(&config).map_err(|e| fail(&e))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| fail(&e));
        let index = Index {
            path: path.to_path_buf(),
            manifests: tree("manifests")?,
            disabled: tree("disabled")?,
            db: db.clone(),
        };
        let meta = tree("meta")?;
        let format = format!("{FORMAT} {}", env!("CARGO_PKG_VERSION"));
        if meta.get("format").map_err(|e| fail(&e))?.as_deref() != Some(format.as_bytes()) {
            index.manifests.clear().map_err(|e| fail(&e))?;
            meta.insert("format", format.as_bytes())
                .map_err(|e| fail(&e))?;
        }
        Ok(index)
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> String {
        format!("cannot {what} the skill index {}: {e}", self.path.display())
    }

    /// The entry of `path`; an undecodable value counts as none.
    pub fn get(&self, path: &Path) -> Result<Option<IndexEntry>, String> {
        let value = self
            .manifests
            .get(path.as_os_str().as_bytes())
            .map_err(|e| self.err("read", e))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    pub fn put(&self, path: &Path, entry: &IndexEntry) -> Result<(), String> {
        let value = serde_json::to_vec(entry).map_err(|e| self.err("encode for", e))?;
        self.manifests
            .insert(path.as_os_str().as_bytes(), value)
            .map_err(|e| self.err("write", e))?;
        Ok(())
    }

    pub fn remove(&self, path: &Path) -> Result<(), String> {
        self.manifests
            .remove(path.as_os_str().as_bytes())
            .map_err(|e| self.err("write", e))?;
        Ok(())
    }

    /// Every indexed manifest path.
    pub fn paths(&self) -> Result<Vec<PathBuf>, String> {
        self.manifests
            .iter()
            .keys()
            .map(|k| {
                k.map(|k| PathBuf::from(std::ffi::OsStr::from_bytes(&k)))
                    .map_err(|e| self.err("read", e))
            })
            .collect()
    }

    /// `name@version` → reason, of every disabled skill version.
    pub fn disabled(&self) -> Result<Vec<(String, String)>, String> {
        self.disabled
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err("read", e))?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    pub fn set_disabled(&self, id: &str, reason: Option<&str>) -> Result<(), String> {
        let result = match reason {
            Some(r) => self.disabled.insert(id, r.as_bytes()).map(|_| ()),
            None => self.disabled.remove(id).map(|_| ()),
        };
        result.map_err(|e| self.err("write", e))
    }

    /// Writes what is buffered to disk. Blocks on file I/O.
    pub fn flush(&self) -> Result<(), String> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| self.err("flush", e))
    }
}

/// The index if it is usable, and why not when it is not.
pub struct IndexHandle {
    state: Mutex<(Option<Index>, Option<String>)>,
}

impl IndexHandle {
    /// Opens `path` (`None`: no index). Failing is logged, not returned.
    pub fn open(path: Option<&Path>) -> IndexHandle {
        // sled may panic on some corruptions: that too is only logged.
        let open = |p: &Path| {
            std::panic::catch_unwind(|| Index::open(p)).unwrap_or_else(|e| Err(panic_text(&*e)))
        };
        let state = match path.map(open) {
            None => (None, Some("no index configured".to_string())),
            Some(Ok(index)) => (Some(index), None),
            Some(Err(e)) => {
                tracing::warn!("{e}; skills are discovered without it (every manifest is read)");
                (None, Some(e))
            }
        };
        IndexHandle {
            state: Mutex::new(state),
        }
    }

    /// Runs `f` on the index; an error switches the index off (logged
    /// once) and yields `None`, as does having no index.
    pub fn with<T>(&self, f: impl FnOnce(&Index) -> Result<T, String>) -> Option<T> {
        let mut state = lock(&self.state);
        let index = state.0.as_ref()?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(index)))
            .unwrap_or_else(|e| Err(panic_text(&*e)));
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("{e}; the skill index is switched off until the next start");
                *state = (None, Some(e));
                None
            }
        }
    }

    /// Why there is no index, if there is none.
    pub fn unusable_reason(&self) -> Option<String> {
        lock(&self.state).1.clone()
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the skill index failed unexpectedly: {text}")
}

#[cfg(test)]
mod tests;
