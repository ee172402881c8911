//! The session store: what a notebook session accumulates (execution
//! count, history, variables, conversation, conversation skills' turns,
//! current model), kept in sled
//! so that a restarted kernel carries on where the last one stopped.
//!
//! One sled database per session name, at
//! `<state_dir>/sessions/<session>/`: sled lets one process open a
//! database, and different Jupyter kernels run under different session
//! names. Inside it:
//!
//! | tree           | key                          | value                          |
//! |----------------|------------------------------|--------------------------------|
//! | `meta`         | `execution_count`, …         | big-endian `u64` / UTF-8       |
//! | `history`      | session ‖ line (big-endian)  | [`codec::HistoryRecord`]       |
//! | `history_chunks` | session ‖ group ‖ chunk    | many `HistoryRecord`s          |
//! | `variables`    | name                         | JSON                           |
//! | `conversation` | turn index (big-endian)      | role + content                 |
//! | `skill_conversation` | skill ‖ 0 ‖ turn index (big-endian) | JSON chat message |
//! | `skill_state`  | skill name                   | JSON metrics and breaker ([`SavedSkill`](skillkernel_skills::exec::SavedSkill)) |
//! | `artifacts`    | blake3 of the content        | header + (lz4) bytes           |
//!
//! [`Store`] is the typed door to those trees; [`Persistence`] wraps it
//! with what the kernel needs at run time — a flusher thread, and falling
//! back to memory when the store cannot be opened or written.

pub mod artifacts;
pub mod codec;
mod flusher;
mod history;
mod persistence;
mod restore;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde_json::Value;
use skillkernel_providers::ChatMessage;
use skillkernel_skills::exec::SavedSkill;
use sled::Transactional;
use thiserror::Error;

pub use artifacts::{ArtifactId, MAX_ARTIFACT_BYTES};
pub use persistence::{Persistence, PersistenceStatus};
pub use restore::Restored;

/// Where and how a session is persisted (from the daemon's `[state]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistConfig {
    /// The daemon's state directory; the store is under `sessions/`.
    pub state_dir: PathBuf,
    /// The session name: which store this kernel continues.
    pub session: String,
    /// Outputs longer than this are stored whole as artifacts.
    pub artifact_threshold_bytes: usize,
    /// Artifacts longer than this are lz4-compressed.
    pub compress_threshold_bytes: usize,
}

impl PersistConfig {
    /// `session` in `state_dir` with the default thresholds.
    pub fn new(state_dir: impl Into<PathBuf>, session: impl Into<String>) -> PersistConfig {
        PersistConfig {
            state_dir: state_dir.into(),
            session: session.into(),
            artifact_threshold_bytes: 2048,
            compress_threshold_bytes: 512,
        }
    }

    /// The session's database directory.
    pub fn session_dir(&self) -> PathBuf {
        self.state_dir
            .join("sessions")
            .join(dir_name(&self.session))
    }
}

/// A session name made safe as one path component: anything but ASCII
/// letters, digits, `.`, `-` and `_` becomes `_`, so a name can never
/// climb out of `sessions/` or name a hidden file.
pub fn dir_name(session: &str) -> String {
    let name: String = session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        format!("_{name}")
    } else {
        name
    }
}

/// A store operation that failed, with the store's path and the cause.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot create the session directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the session store {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "the session store {path} is locked by another process \
         (another kernel running with the same session name?)"
    )]
    Locked { path: PathBuf },
    #[error("cannot write to the session store {path}: {source}")]
    Write { path: PathBuf, source: sled::Error },
    #[error("cannot read from the session store {path}: {source}")]
    Read { path: PathBuf, source: sled::Error },
    #[error("cannot flush the session store {path} to disk: {source}")]
    Flush { path: PathBuf, source: sled::Error },
    #[error("cannot start the flusher thread for {path}: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("artifact {id} in {path} is not there")]
    MissingArtifact { path: PathBuf, id: ArtifactId },
    #[error("artifact {id} in {path} cannot be read: {source}")]
    BadArtifact {
        path: PathBuf,
        id: ArtifactId,
        source: artifacts::ArtifactError,
    },
    #[error("session state is only in memory: {reason}")]
    InMemory { reason: String },
    #[error("cannot encode a record for the session store: {0}")]
    Encode(String),
}

/// Keys of the `meta` tree.
mod meta {
    pub const EXECUTION_COUNT: &[u8] = b"execution_count";
    /// The history session number of the kernel that last opened the store.
    pub const HISTORY_SESSION: &[u8] = b"history_session";
    pub const CURRENT_MODEL: &[u8] = b"current_model";
    /// Present when the next start must begin a fresh session.
    pub const FRESH_START: &[u8] = b"fresh_start";
    pub const ARTIFACT_COUNT: &[u8] = b"artifact_count";
    /// History entries stored, so a start need not count them.
    pub const HISTORY_COUNT: &[u8] = b"history_count";
    pub const ARTIFACT_BYTES: &[u8] = b"artifact_bytes";
}

/// The open store of one session.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    /// History entries of the current group (and any not yet sealed).
    history: sled::Tree,
    /// History entries of past groups, packed (see `history`).
    history_chunks: sled::Tree,
    variables: sled::Tree,
    conversation: sled::Tree,
    skill_conversation: sled::Tree,
    skill_state: sled::Tree,
    artifacts: sled::Tree,
    compress_above: usize,
}

impl Store {
    /// Opens (or creates) the store of `config.session` and restores what
    /// it holds, applying the fresh-start rule and beginning a new history
    /// session. Blocks on file I/O: call it before serving, or off the
    /// async runtime.
    pub fn open(config: &PersistConfig) -> Result<(Store, Restored), StoreError> {
        let path = config.session_dir();
        std::fs::create_dir_all(&path).map_err(|source| StoreError::CreateDir {
            path: path.clone(),
            source,
        })?;
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let sled_config = sled::Config::new()
            .path(&path)
            // Memory holds what is read often (the newest history,
            // variables); the store is read rarely (older history,
            // artifacts). sled's resident memory is a multiple of this
            // figure and grows with the pages it has (docs/performance.md,
            // "Soak"), so it is kept small.
            .cache_capacity(4 << 20)
            // Our own flusher thread flushes after each change (see
            // `flusher`); sled's timer would only add wake-ups.
            .flush_every_ms(None);
        let db = skillkernel_stdx::sled_open::open(&sled_config).map_err(|e| {
            if skillkernel_stdx::sled_open::is_lock_error(&e) {
                StoreError::Locked { path: path.clone() }
            } else {
                open_err(e)
            }
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(open_err);
        let store = Store {
            meta: tree("meta")?,
            history: tree("history")?,
            history_chunks: tree("history_chunks")?,
            variables: tree("variables")?,
            conversation: tree("conversation")?,
            skill_conversation: tree("skill_conversation")?,
            skill_state: tree("skill_state")?,
            artifacts: tree("artifacts")?,
            db: db.clone(),
            path: path.clone(),
            compress_above: config.compress_threshold_bytes,
        };
        let restored = restore::load(&store)?;
        Ok((store, restored))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_err(&self) -> impl Fn(sled::Error) -> StoreError + '_ {
        |source| StoreError::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn read_err(&self) -> impl Fn(sled::Error) -> StoreError + '_ {
        |source| StoreError::Read {
            path: self.path.clone(),
            source,
        }
    }

    pub fn set_execution_count(&self, count: u64) -> Result<(), StoreError> {
        self.meta
            .insert(meta::EXECUTION_COUNT, &count.to_be_bytes()[..])
            .map_err(self.write_err())?;
        Ok(())
    }

    pub fn set_variable(&self, name: &str, value: &Value) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        self.variables
            .insert(name, bytes)
            .map_err(self.write_err())?;
        Ok(())
    }

    pub fn remove_variable(&self, name: &str) -> Result<(), StoreError> {
        self.variables.remove(name).map_err(self.write_err())?;
        Ok(())
    }

    /// Writes the conversation turn at `index` (0-based).
    pub fn put_turn(&self, index: u64, role: &str, content: &str) -> Result<(), StoreError> {
        self.conversation
            .insert(index.to_be_bytes(), codec::encode_turn(role, content))
            .map_err(self.write_err())?;
        Ok(())
    }

    /// Forgets every conversation turn.
    pub fn clear_conversation(&self) -> Result<(), StoreError> {
        self.conversation.clear().map_err(self.write_err())
    }

    /// Writes conversation skill `skill`'s turns from index `first` on.
    pub fn put_skill_turns(
        &self,
        skill: &str,
        first: usize,
        turns: &[ChatMessage],
    ) -> Result<(), StoreError> {
        for (i, turn) in turns.iter().enumerate() {
            let value = serde_json::to_vec(turn).map_err(|e| StoreError::Encode(e.to_string()))?;
            self.skill_conversation
                .insert(codec::skill_turn_key(skill, (first + i) as u64), value)
                .map_err(self.write_err())?;
        }
        Ok(())
    }

    /// Forgets conversation skill `skill`'s turns.
    pub fn clear_skill_conversation(&self, skill: &str) -> Result<(), StoreError> {
        let write = self.write_err();
        for item in self
            .skill_conversation
            .scan_prefix(codec::skill_turn_prefix(skill))
        {
            let (key, _) = item.map_err(self.read_err())?;
            self.skill_conversation.remove(key).map_err(&write)?;
        }
        Ok(())
    }

    /// Writes skill `skill`'s metrics and breaker as they stand.
    pub fn put_skill_state(&self, skill: &str, state: &SavedSkill) -> Result<(), StoreError> {
        let value = serde_json::to_vec(state).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.skill_state
            .insert(skill.as_bytes(), value)
            .map_err(self.write_err())?;
        Ok(())
    }

    /// Forgets skill `skill`'s saved metrics and breaker.
    pub fn clear_skill_state(&self, skill: &str) -> Result<(), StoreError> {
        self.skill_state
            .remove(skill.as_bytes())
            .map_err(self.write_err())?;
        Ok(())
    }

    pub fn set_current_model(&self, model: Option<&str>) -> Result<(), StoreError> {
        match model {
            Some(m) => self
                .meta
                .insert(meta::CURRENT_MODEL, m.as_bytes())
                .map(drop),
            None => self.meta.remove(meta::CURRENT_MODEL).map(drop),
        }
        .map_err(self.write_err())
    }

    /// Marks the store so that the next [`Store::open`] starts a fresh
    /// session (count 1, no variables, conversation or model; history
    /// kept), and flushes that mark to disk.
    pub fn mark_fresh_start(&self) -> Result<(), StoreError> {
        self.meta
            .insert(meta::FRESH_START, &[1u8][..])
            .map_err(self.write_err())?;
        self.flush()
    }

    /// Stores `content` as an artifact unless it is already there; returns
    /// its id.
    pub fn put_artifact(&self, content: &[u8]) -> Result<ArtifactId, StoreError> {
        let id = ArtifactId::of(content);
        if self
            .artifacts
            .contains_key(id.as_bytes())
            .map_err(self.read_err())?
        {
            return Ok(id);
        }
        let stored = artifacts::encode(content, self.compress_above);
        // The counters move with the artifact, so `%status` can report
        // them without scanning the tree.
        let result = (&self.artifacts, &self.meta).transaction(|(a, m)| {
            if a.insert(id.as_bytes(), stored.as_slice())?.is_some() {
                return Ok(());
            }
            let read = |key| -> Result<u64, sled::transaction::UnabortableTransactionError> {
                Ok(m.get(key)?
                    .and_then(|v| codec::decode_u64(&v).ok())
                    .unwrap_or(0))
            };
            let count = read(meta::ARTIFACT_COUNT)? + 1;
            let bytes = read(meta::ARTIFACT_BYTES)? + stored.len() as u64;
            m.insert(meta::ARTIFACT_COUNT, &count.to_be_bytes()[..])?;
            m.insert(meta::ARTIFACT_BYTES, &bytes.to_be_bytes()[..])?;
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        });
        match result {
            Ok(()) => Ok(id),
            Err(sled::transaction::TransactionError::Storage(source)) => Err(StoreError::Write {
                path: self.path.clone(),
                source,
            }),
            // The closure never aborts.
            Err(sled::transaction::TransactionError::Abort(())) => Ok(id),
        }
    }

    /// The content of artifact `id`.
    pub fn get_artifact(&self, id: &ArtifactId) -> Result<Vec<u8>, StoreError> {
        let stored = self
            .artifacts
            .get(id.as_bytes())
            .map_err(self.read_err())?
            .ok_or_else(|| StoreError::MissingArtifact {
                path: self.path.clone(),
                id: *id,
            })?;
        artifacts::decode(id, &stored).map_err(|source| StoreError::BadArtifact {
            path: self.path.clone(),
            id: *id,
            source,
        })
    }

    /// How many artifacts are stored and their stored size in bytes.
    pub fn artifact_stats(&self) -> (u64, u64) {
        let read = |key| {
            self.meta
                .get(key)
                .ok()
                .flatten()
                .and_then(|v| codec::decode_u64(&v).ok())
                .unwrap_or(0)
        };
        (read(meta::ARTIFACT_COUNT), read(meta::ARTIFACT_BYTES))
    }

    /// Writes everything to disk (fsync). Slow: never on the async runtime.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|source| StoreError::Flush {
            path: self.path.clone(),
            source,
        })?;
        Ok(())
    }
}
