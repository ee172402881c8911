//! Changes to session data, written through to the session store as they
//! happen: each method changes the in-memory [`SessionState`](super::SessionState)
//! and the store together, under the state lock so the store sees changes
//! in the order the session made them. Store writes only reach sled's
//! buffers; the flusher thread puts them on disk off the reply path.
//!
//! Also the persistence API other parts of the daemon call:
//! [`Shared::persistence_status`], [`Shared::save_state`] and
//! [`Shared::mark_fresh_start`].

use std::sync::Arc;

use serde_json::Value;
use skillkernel_providers::{ChatMessage, GenerationStats};
use skillkernel_skills::exec::SavedSkill;

use crate::history::{summarize, HistoryEntry, MEMORY_TAIL_ALONE};
use crate::session::Shared;
use crate::store::codec::HistoryRecord;
use crate::store::{PersistenceStatus, StoreError, MAX_ARTIFACT_BYTES};
use skillkernel_protocol::content::HistoryRequest;

/// What a cell's output record may hold when nothing stores it whole: a
/// little over the history summary.
const IN_MEMORY_RECORD_BYTES: usize = 4096;

impl Shared {
    /// Counts a cell that stores history and records its input; returns
    /// its execution count.
    pub(crate) fn begin_history(&self, code: &str) -> u64 {
        let mut state = self.state_mut();
        state.execution_count += 1;
        let count = state.execution_count;
        let session = state.history.session;
        let record = HistoryRecord::of(state.history.record(count, code));
        self.persistence.write(|store| {
            store.set_execution_count(count)?;
            store.put_history(session, count, &record)
        });
        if !self.persistence.holds_history() && state.history.cap() < MEMORY_TAIL_ALONE {
            // The store stopped taking entries: memory is all there is
            // from now on, so it keeps as many as it would alone.
            state.history.set_cap(MEMORY_TAIL_ALONE);
        }
        count
    }

    /// The history entries `req` asks for, oldest first: from memory
    /// when it holds them all, else read from the store off the runtime.
    pub async fn history(self: &Arc<Self>, req: &HistoryRequest) -> Vec<HistoryEntry> {
        let (covered, current) = self.with_state(|s| (s.history.covers(req), s.history.session));
        if !covered && self.persistence.reads_history() {
            // After a write failure the store lacks the newest entries:
            // memory's go first (see `Persistence::select_history`).
            let memory = if self.persistence.holds_history() {
                Vec::new()
            } else {
                self.with_state(|s| s.history.newest_first().collect())
            };
            let shared = self.clone();
            let request = req.clone();
            let stored = tokio::task::spawn_blocking(move || {
                shared.persistence.select_history(&request, current, memory)
            })
            .await;
            if let Ok(Some(entries)) = stored {
                return entries;
            }
        }
        self.with_state(|s| s.history.select(req))
    }

    /// How much of a cell's output to keep for history: all of it (up to
    /// the artifact limit) when it can be stored whole, else enough for
    /// the summary.
    pub(crate) fn output_record_limit(&self) -> usize {
        if self.persistence.keeps_artifacts() {
            MAX_ARTIFACT_BYTES
        } else {
            IN_MEMORY_RECORD_BYTES
        }
    }

    /// Attaches the output of the current session's `line` to its history
    /// entry: a summary, plus the whole output as an artifact when the
    /// summary is not all of it or it is over the artifact threshold.
    pub(crate) async fn record_output(self: &Arc<Self>, line: u64, output: String) {
        let (summary, cut) = summarize(&output);
        let artifact = if self.persistence.wants_artifact(output.len(), cut) {
            // Hashing and compressing megabytes is not work for an IO thread.
            let shared = self.clone();
            tokio::task::spawn_blocking(move || shared.persistence.put_artifact(output.as_bytes()))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "storing an output artifact failed");
                    None
                })
        } else {
            None
        };
        let mut state = self.state_mut();
        let session = state.history.session;
        if let Some(entry) = state.history.set_output(line, summary, artifact) {
            let record = HistoryRecord::of(entry);
            self.persistence
                .write(|store| store.put_history(session, line, &record));
        }
    }

    /// `entries` with each artifact-backed output replaced by the whole
    /// output from the store (the summary stays if it cannot be read).
    pub async fn with_full_outputs(
        self: &Arc<Self>,
        entries: Vec<HistoryEntry>,
    ) -> Vec<HistoryEntry> {
        if entries.iter().all(|e| e.artifact.is_none()) {
            return entries;
        }
        let shared = self.clone();
        let fallback = entries.clone();
        tokio::task::spawn_blocking(move || {
            entries
                .into_iter()
                .map(|mut e| {
                    if let Some(id) = e.artifact {
                        match shared.persistence.read_artifact(&id) {
                            Ok(bytes) => {
                                e.output = Some(String::from_utf8_lossy(&bytes).into_owned())
                            }
                            Err(err) => tracing::warn!(
                                session = e.session,
                                line = e.line,
                                "serving the output summary: {err}"
                            ),
                        }
                    }
                    e
                })
                .collect()
        })
        .await
        .unwrap_or(fallback)
    }

    /// Sets a session variable.
    pub fn set_variable(&self, name: String, value: Value) {
        let mut state = self.state_mut();
        self.persistence
            .write(|store| store.set_variable(&name, &value));
        state.variables.insert(name, value);
    }

    /// Removes a session variable; returns its value if it was set.
    pub fn remove_variable(&self, name: &str) -> Option<Value> {
        let mut state = self.state_mut();
        let old = state.variables.remove(name);
        if old.is_some() {
            self.persistence.write(|store| store.remove_variable(name));
        }
        old
    }

    /// Adds a question and its answer to the conversation.
    pub fn push_turn(&self, user: ChatMessage, assistant: ChatMessage) {
        let mut state = self.state_mut();
        let first = state.conversation.len() as u64;
        self.persistence.write(|store| {
            store.put_turn(first, &user.role, &user.content)?;
            store.put_turn(first + 1, &assistant.role, &assistant.content)
        });
        state.conversation.push(user);
        state.conversation.push(assistant);
    }

    /// Stores conversation skill `skill`'s new turns, the first of which
    /// is turn `first` (the notebook's turns themselves live in
    /// [`Skills`](skillkernel_skills::service::Skills)).
    pub fn record_skill_turns(&self, skill: &str, first: usize, turns: &[ChatMessage]) {
        if !turns.is_empty() {
            self.persistence
                .write(|store| store.put_skill_turns(skill, first, turns));
        }
    }

    /// Stores skill `skill`'s metrics and breaker as they stand.
    pub fn record_skill_state(&self, skill: &str, state: &SavedSkill) {
        self.persistence
            .write(|store| store.put_skill_state(skill, state));
    }

    /// Forgets skill `skill`'s stored metrics and breaker.
    pub fn forget_skill_state(&self, skill: &str) {
        self.persistence
            .write(|store| store.clear_skill_state(skill));
    }

    /// Forgets conversation skill `skill`'s stored turns.
    pub fn forget_skill_conversation(&self, skill: &str) {
        self.persistence
            .write(|store| store.clear_skill_conversation(skill));
    }

    /// Ends the conversation: the next prompt starts a new one. Returns
    /// how many messages were dropped.
    pub fn clear_conversation(&self) -> usize {
        let mut state = self.state_mut();
        self.persistence.write(|store| store.clear_conversation());
        std::mem::take(&mut state.conversation).len()
    }

    /// Counts one generation by `model` in the session's usage figures
    /// (`%model stats`; kept in memory for this process).
    pub fn record_model_usage(&self, model: &str, stats: &GenerationStats) {
        self.state_mut()
            .model_stats
            .entry(model.to_owned())
            .or_default()
            .record(stats);
    }

    /// Sets the model this session's prompts use (`None`: the default).
    pub fn set_current_model(&self, model: Option<String>) {
        let mut state = self.state_mut();
        self.persistence
            .write(|store| store.set_current_model(model.as_deref()));
        state.current_model = model;
    }

    /// Whether and where this session is persisted, and how much it holds.
    pub fn persistence_status(&self) -> PersistenceStatus {
        let (session, entries, in_memory) = {
            let state = self.state_mut();
            let history = &state.history;
            (history.session, history.len(), history.in_memory())
        };
        self.persistence.status(session, entries, in_memory)
    }

    /// Flushes every change to disk now (the shutdown's SavingState
    /// phase). Blocks on an fsync: call it from `spawn_blocking`. An error
    /// means the session's recent changes are only in memory.
    pub fn save_state(&self) -> Result<(), StoreError> {
        self.persistence.save()
    }

    /// Makes the next start of this session fresh — count 1, no variables,
    /// conversation or chosen model; history kept — as a client asking for
    /// `shutdown_request` with `restart: true` expects. Durable when it
    /// returns. Blocks on an fsync: call it from `spawn_blocking`.
    pub fn mark_fresh_start(&self) -> Result<(), StoreError> {
        self.persistence.mark_fresh_start()
    }
}
