//! Reading a session back at start, and the session rules applied then.
//!
//! Each start begins a new history session (the previous number + 1), as
//! IPython does, while the execution count, variables, conversation
//! (the prompt cells' and each conversation skill's) and model carry on — a daemon restart loses nothing. The exception is a
//! start after a client asked for `shutdown_request` with `restart: true`
//! (the store carries a fresh-start mark): that session begins fresh —
//! count 0, no variables, no conversation, the default model — and only
//! the history stays, under its older session numbers.
//!
//! Artifacts are not read here: history entries carry their ids, and the
//! full output is read when a client asks for it.

use std::collections::BTreeMap;

use serde_json::Value;
use skillkernel_providers::ChatMessage;
use skillkernel_skills::exec::SavedSkill;

use super::codec;
use super::{meta, Store, StoreError};
use crate::history::{HistoryEntry, MEMORY_TAIL_STORED};

/// What a store held when it was opened.
#[derive(Debug, Default)]
pub struct Restored {
    pub execution_count: u64,
    /// The history session number this kernel runs under.
    pub history_session: i64,
    /// The newest stored history entries (at most
    /// [`MEMORY_TAIL_STORED`]), ordered by session, then line.
    pub history: Vec<HistoryEntry>,
    /// How many history entries the store holds in all.
    pub history_total: usize,
    pub variables: BTreeMap<String, Value>,
    pub conversation: Vec<ChatMessage>,
    /// Conversation skills' turns, by skill name, in order.
    pub skill_conversations: BTreeMap<String, Vec<ChatMessage>>,
    /// Skills' metrics and breakers, by skill name.
    pub skill_states: BTreeMap<String, SavedSkill>,
    pub current_model: Option<String>,
    /// Whether the fresh-start mark was found (and applied).
    pub fresh_start: bool,
    /// Records that could not be read and were left out.
    pub skipped: usize,
}

/// Applies the session rules to `store` and reads it.
pub(super) fn load(store: &Store) -> Result<Restored, StoreError> {
    let read = store.read_err();
    let write = store.write_err();
    let mut restored = Restored {
        fresh_start: store.meta.contains_key(meta::FRESH_START).map_err(&read)?,
        ..Restored::default()
    };
    if restored.fresh_start {
        store.variables.clear().map_err(&write)?;
        store.conversation.clear().map_err(&write)?;
        store.skill_conversation.clear().map_err(&write)?;
        store.skill_state.clear().map_err(&write)?;
        store.meta.remove(meta::CURRENT_MODEL).map_err(&write)?;
        store.set_execution_count(0)?;
        // Removed last: a crash half-way through leaves the mark, and the
        // next start finishes the job.
        store.meta.remove(meta::FRESH_START).map_err(&write)?;
    }

    // The newest session is the larger of the recorded number and the
    // last entry's, so a lost meta key cannot reuse a session number.
    let recorded = read_u64(store, meta::HISTORY_SESSION, &mut restored)?;
    let last_entry = store.last_history_session()? as u64;
    let session = recorded.max(last_entry).saturating_add(1);
    store
        .meta
        .insert(meta::HISTORY_SESSION, &session.to_be_bytes()[..])
        .map_err(&write)?;
    restored.history_session = i64::try_from(session).unwrap_or(i64::MAX);
    // What earlier runs left loose (the last group of each; every entry
    // of a store written before chunks) is packed now.
    store.seal_older_sessions(restored.history_session)?;

    restored.execution_count = read_u64(store, meta::EXECUTION_COUNT, &mut restored)?;
    restored.current_model = match store.meta.get(meta::CURRENT_MODEL).map_err(&read)? {
        Some(v) => match String::from_utf8(v.to_vec()) {
            Ok(model) => Some(model),
            Err(_) => {
                skip(store, &mut restored, "current model", "not UTF-8");
                None
            }
        },
        None => None,
    };

    // Only the newest entries come into memory; older ones are read from
    // the store when a request reaches back that far.
    let mut newest_first = store.history_newest_first();
    let mut more = false;
    for item in newest_first.by_ref() {
        if restored.history.len() == MEMORY_TAIL_STORED {
            more = true;
            break;
        }
        restored.history.push(item?);
    }
    restored.skipped += newest_first.skipped;
    restored.history.reverse();
    // The count kept in meta (counting a million keys would slow every
    // start), never below what was seen: memory must not believe it holds
    // everything when the store holds more.
    let seen = restored.history.len() + usize::from(more);
    restored.history_total = if more {
        let counted = if store
            .meta
            .contains_key(meta::HISTORY_COUNT)
            .map_err(&read)?
        {
            usize::try_from(read_u64(store, meta::HISTORY_COUNT, &mut restored)?)
                .unwrap_or(usize::MAX)
        } else {
            // A store from before the count: count once.
            store.count_history()
        };
        counted.max(seen)
    } else {
        seen
    };
    store
        .meta
        .insert(
            meta::HISTORY_COUNT,
            &(restored.history_total as u64).to_be_bytes()[..],
        )
        .map_err(&write)?;

    for item in store.variables.iter() {
        let (key, value) = item.map_err(&read)?;
        let name = String::from_utf8(key.to_vec());
        match (name, serde_json::from_slice::<Value>(&value)) {
            (Ok(name), Ok(value)) => {
                restored.variables.insert(name, value);
            }
            (Err(_), _) => skip(store, &mut restored, "variable", "name is not UTF-8"),
            (Ok(name), Err(e)) => skip(store, &mut restored, "variable", &format!("`{name}`: {e}")),
        }
    }

    for item in store.conversation.iter() {
        let (_, value) = item.map_err(&read)?;
        match codec::decode_turn(&value) {
            Ok((role, content)) => restored.conversation.push(ChatMessage::new(role, content)),
            Err(e) => skip(store, &mut restored, "conversation turn", &e.to_string()),
        }
    }

    // Keys sort by skill, then index: each skill's turns arrive in order.
    for item in store.skill_conversation.iter() {
        let (key, value) = item.map_err(&read)?;
        let turn = codec::parse_skill_turn_key(&key)
            .map_err(|e| e.to_string())
            .and_then(|(skill, _)| {
                serde_json::from_slice::<ChatMessage>(&value)
                    .map(|turn| (skill, turn))
                    .map_err(|e| e.to_string())
            });
        match turn {
            Ok((skill, turn)) => restored
                .skill_conversations
                .entry(skill)
                .or_default()
                .push(turn),
            Err(e) => skip(store, &mut restored, "conversation skill turn", &e),
        }
    }

    for item in store.skill_state.iter() {
        let (key, value) = item.map_err(&read)?;
        let state = std::str::from_utf8(&key)
            .map_err(|e| e.to_string())
            .and_then(|skill| {
                serde_json::from_slice::<SavedSkill>(&value)
                    .map(|state| (skill.to_owned(), state))
                    .map_err(|e| e.to_string())
            });
        match state {
            Ok((skill, state)) => {
                restored.skill_states.insert(skill, state);
            }
            Err(e) => skip(store, &mut restored, "skill metrics and breaker", &e),
        }
    }
    Ok(restored)
}

/// A counter in the meta tree; 0 when absent or unreadable.
fn read_u64(store: &Store, key: &[u8], restored: &mut Restored) -> Result<u64, StoreError> {
    let Some(value) = store.meta.get(key).map_err(store.read_err())? else {
        return Ok(0);
    };
    match codec::decode_u64(&value) {
        Ok(n) => Ok(n),
        Err(e) => {
            let name = String::from_utf8_lossy(key).into_owned();
            skip(store, restored, &name, &e.to_string());
            Ok(0)
        }
    }
}

/// Leaves out a record that cannot be read, saying so once per record.
fn skip(store: &Store, restored: &mut Restored, what: &str, why: &str) {
    restored.skipped += 1;
    tracing::warn!(
        path = %store.path.display(),
        "skipping an unreadable {what} in the session store: {why}"
    );
}
