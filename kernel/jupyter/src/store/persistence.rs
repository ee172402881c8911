//! [`Persistence`]: the session store as the kernel uses it at run time —
//! written as work happens, flushed by a background thread, and never
//! fatal. When the store cannot be opened (unwritable state dir, database
//! locked by another process) or a write or flush fails (disk full), the
//! error is logged once with the path and the cause, the session carries
//! on in memory, and [`PersistenceStatus`] says why.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use skillkernel_protocol::content::HistoryRequest;

use super::flusher::Flusher;
use super::{ArtifactId, PersistConfig, Restored, Store, StoreError};
use crate::history::HistoryEntry;
use skillkernel_stdx::lock;

/// Whether and where the session is persisted, for `%status`, state
/// dumps and the status request (a section of the status reply).
pub use skillkernel_protocol::content::PersistenceStatus;

/// The first failure, shared with the flusher thread.
#[derive(Default)]
struct Failure {
    reason: Mutex<Option<String>>,
}

impl Failure {
    /// Records `e` and logs it, unless a failure is already recorded.
    fn set(&self, e: &StoreError) {
        let mut reason = lock(&self.reason);
        if reason.is_none() {
            tracing::error!("{e}; the session continues in memory and later changes are not saved");
            *reason = Some(e.to_string());
        }
    }

    fn get(&self) -> Option<String> {
        lock(&self.reason).clone()
    }
}

/// The session's store, if it is usable, and what happened to it.
pub struct Persistence {
    session: Option<String>,
    path: Option<PathBuf>,
    artifact_threshold: usize,
    // Field order matters: the flusher (which holds a handle to the
    // database) stops before the store closes.
    flusher: Option<Flusher>,
    store: Option<Arc<Store>>,
    failure: Arc<Failure>,
}

/// Why a session with persistence switched off is in memory.
const OFF: &str = "persistence is off";

impl Persistence {
    /// A session kept only in memory.
    pub fn off() -> Persistence {
        let failure = Failure::default();
        *lock(&failure.reason) = Some(OFF.into());
        Persistence {
            session: None,
            path: None,
            artifact_threshold: usize::MAX,
            flusher: None,
            store: None,
            failure: Arc::new(failure),
        }
    }

    /// Opens the store `config` names and restores it. Failing that, the
    /// session runs in memory and the error is logged and kept as the
    /// reason. Blocks on file I/O.
    pub fn open(config: Option<&PersistConfig>) -> (Persistence, Option<Restored>) {
        let Some(config) = config else {
            return (Persistence::off(), None);
        };
        let path = config.session_dir();
        let failure = Arc::new(Failure::default());
        let mut persistence = Persistence {
            session: Some(config.session.clone()),
            path: Some(path.clone()),
            artifact_threshold: config.artifact_threshold_bytes,
            flusher: None,
            store: None,
            failure: failure.clone(),
        };
        let (store, restored) = match Store::open(config) {
            Ok((store, restored)) => (Arc::new(store), restored),
            Err(e) => {
                failure.set(&e);
                return (persistence, None);
            }
        };
        let flush_store = store.clone();
        let flush_failure = failure.clone();
        let flusher = Flusher::start(move || flush_store.flush(), move |e| flush_failure.set(&e));
        match flusher {
            Ok(flusher) => {
                tracing::info!(
                    session = %config.session,
                    path = %path.display(),
                    history_session = restored.history_session,
                    execution_count = restored.execution_count,
                    history_entries = restored.history_total,
                    fresh_start = restored.fresh_start,
                    skipped = restored.skipped,
                    "session state restored"
                );
                // Restoring wrote too (the new history session number,
                // a fresh start's resets): put that on disk as well.
                flusher.changed();
                persistence.flusher = Some(flusher);
                persistence.store = Some(store);
                (persistence, Some(restored))
            }
            Err(source) => {
                failure.set(&StoreError::Thread { path, source });
                (persistence, None)
            }
        }
    }

    /// The store, while changes may still be written to it.
    fn writable(&self) -> Option<&Store> {
        if self.failure.get().is_some() {
            return None;
        }
        self.store.as_deref()
    }

    /// Applies one change to the store and schedules a flush. A failure
    /// switches the session to memory (logged once); the change itself is
    /// already in memory, so the caller carries on either way.
    pub fn write(&self, change: impl FnOnce(&Store) -> Result<(), StoreError>) {
        let Some(store) = self.writable() else {
            return;
        };
        match change(store) {
            Ok(()) => {
                if let Some(flusher) = &self.flusher {
                    flusher.changed();
                }
            }
            Err(e) => self.failure.set(&e),
        }
    }

    /// Whether the store holds every history entry memory holds (it is
    /// writable), so that it can answer for the ones memory let go.
    pub fn holds_history(&self) -> bool {
        self.writable().is_some()
    }

    /// Whether there is a store to read history from (even one that no
    /// longer takes writes: what it holds is still there).
    pub fn reads_history(&self) -> bool {
        self.store.is_some()
    }

    /// The history entries `req` asks for, read from the store (see
    /// [`Store::select_history`]). After a write failure the store lacks
    /// what came since: `memory` (the entries memory holds, newest first)
    /// answers for those and the store for what is older. `None` when
    /// there is no store or it cannot be read (logged). Blocks on file
    /// I/O.
    pub fn select_history(
        &self,
        req: &HistoryRequest,
        current: i64,
        memory: Vec<HistoryEntry>,
    ) -> Option<Vec<HistoryEntry>> {
        let store = self.store.as_ref()?;
        let newer = if self.writable().is_some() {
            Vec::new()
        } else {
            memory
        };
        store
            .select_history_below(req, current, newer)
            .inspect_err(|e| tracing::warn!("{e}; answering from the history in memory"))
            .ok()
    }

    /// Whether large outputs can be kept whole (the store is writable).
    pub fn keeps_artifacts(&self) -> bool {
        self.writable().is_some()
    }

    /// Whether an output of `len` bytes, whose summary is cut short when
    /// `summary_cut`, should be stored whole as an artifact.
    pub fn wants_artifact(&self, len: usize, summary_cut: bool) -> bool {
        self.writable().is_some() && (len > self.artifact_threshold || summary_cut)
    }

    /// Stores `content` as an artifact. Blocks on file I/O and
    /// compression: call it off the async runtime.
    pub fn put_artifact(&self, content: &[u8]) -> Option<ArtifactId> {
        let store = self.writable()?;
        match store.put_artifact(content) {
            Ok(id) => {
                if let Some(flusher) = &self.flusher {
                    flusher.changed();
                }
                Some(id)
            }
            Err(e) => {
                self.failure.set(&e);
                None
            }
        }
    }

    /// The content of an artifact (read even after a write failure: what
    /// is stored is still there). Blocks on file I/O.
    pub fn read_artifact(&self, id: &ArtifactId) -> Result<Vec<u8>, StoreError> {
        match &self.store {
            Some(store) => store.get_artifact(id),
            None => Err(self.in_memory()),
        }
    }

    fn in_memory(&self) -> StoreError {
        StoreError::InMemory {
            reason: self.failure.get().unwrap_or_else(|| OFF.into()),
        }
    }

    /// Flushes every change to disk now. Blocks on an fsync: call it off
    /// the async runtime (`spawn_blocking`).
    pub fn save(&self) -> Result<(), StoreError> {
        if self.session.is_none() {
            // Persistence is off: there is nothing to save.
            return Ok(());
        }
        let Some(store) = self.writable() else {
            return Err(self.in_memory());
        };
        let generation = self.flusher.as_ref().map_or(0, Flusher::generation);
        match store.flush() {
            Ok(()) => {
                if let Some(flusher) = &self.flusher {
                    flusher.flushed_through(generation);
                }
                Ok(())
            }
            Err(e) => {
                self.failure.set(&e);
                Err(e)
            }
        }
    }

    /// Makes the next start of this session fresh (see
    /// [`super::restore`]), durably. Blocks on an fsync. Tried even after
    /// an earlier write failed: without the mark the next start would
    /// continue a session the client asked to end.
    pub fn mark_fresh_start(&self) -> Result<(), StoreError> {
        if self.session.is_none() {
            return Ok(());
        }
        let Some(store) = self.store.as_deref() else {
            return Err(self.in_memory());
        };
        store
            .mark_fresh_start()
            .inspect_err(|e| self.failure.set(e))
    }

    /// The status, given the history's current figures.
    pub fn status(
        &self,
        history_session: i64,
        history_entries: usize,
        history_in_memory: usize,
    ) -> PersistenceStatus {
        let reason = self.failure.get();
        let (artifacts, artifact_bytes) =
            self.store.as_ref().map_or((0, 0), |s| s.artifact_stats());
        PersistenceStatus {
            session: self.session.clone(),
            path: self.path.clone(),
            persisted: reason.is_none() && self.store.is_some(),
            reason,
            history_session,
            history_entries,
            history_in_memory,
            artifacts,
            artifact_bytes,
            unsaved_changes: self.flusher.as_ref().map_or(0, Flusher::unsaved),
        }
    }
}
