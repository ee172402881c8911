//! History in the store: written a key per entry while its group of
//! [`HISTORY_GROUP`] lines is current, packed into chunks once the session
//! has moved past the group, and read back newest first from both.
//!
//! Why chunks: sled splits a leaf past 16 keys and keeps bookkeeping for
//! every page in memory whatever its cache size, so a key per cell cost
//! about 28 MiB of resident memory over a million cells
//! (docs/performance.md, "Soak"). A chunk holds a group's entries under
//! one key, so the store has a hundred times fewer keys and pages.
//!
//! Architecture invariant: an entry is either loose (tree `history`, key
//! `session ‖ line`) or in a chunk of its group (tree `history_chunks`,
//! key `session ‖ group start ‖ chunk number`), never both. Entries of a
//! group may be spread over several chunks and loose keys (a chunk holds
//! at most [`CHUNK_BYTES`]; a group can be sealed again), so a reader
//! gathers a whole group before ordering it.

use std::iter::{Peekable, Rev};

use skillkernel_protocol::content::{HistAccessType, HistoryRequest};

use super::codec::{
    self, chunk_key, decode_chunk, encode_chunk, history_key, parse_chunk_key, parse_history_key,
    HistoryRecord, HISTORY_GROUP,
};
use super::{meta, Store, StoreError};
use crate::history::{absolute_session, select_from, HistoryEntry};

/// A chunk is closed once it holds this much (an entry larger than this
/// has a chunk of its own), so that reading one line never reads much.
pub(super) const CHUNK_BYTES: usize = 256 << 10;

/// The first line of `line`'s group.
fn group_of(line: u64) -> u64 {
    line - line % HISTORY_GROUP
}

impl Store {
    /// Writes (or rewrites) the history entry `session`/`line`. The first
    /// entry of a group seals the group before it.
    pub fn put_history(
        &self,
        session: i64,
        line: u64,
        record: &HistoryRecord,
    ) -> Result<(), StoreError> {
        let encoded = record.encode();
        let new = match self.chunk_holding(session, line)? {
            Some(chunk) => {
                self.rewrite_in_chunk(chunk, line, &encoded)?;
                false
            }
            None => self
                .history
                .insert(history_key(session, line), encoded)
                .map_err(self.write_err())?
                .is_none(),
        };
        if new {
            let count = self
                .meta
                .get(meta::HISTORY_COUNT)
                .map_err(self.read_err())?
                .and_then(|v| codec::decode_u64(&v).ok())
                .unwrap_or(0);
            self.meta
                .insert(meta::HISTORY_COUNT, &(count + 1).to_be_bytes()[..])
                .map_err(self.write_err())?;
            if line.is_multiple_of(HISTORY_GROUP) && line >= HISTORY_GROUP {
                self.seal_group(session, line - HISTORY_GROUP)?;
            }
        }
        Ok(())
    }

    /// The key and bytes of the chunk that holds `session`/`line`, if its
    /// group has been sealed with it.
    fn chunk_holding(&self, session: i64, line: u64) -> Result<Option<sled::IVec>, StoreError> {
        for item in self
            .history_chunks
            .scan_prefix(history_key(session, group_of(line)))
        {
            let (key, bytes) = item.map_err(self.read_err())?;
            if decode_chunk(&bytes).0.iter().any(|(l, _)| *l == line) {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    fn rewrite_in_chunk(
        &self,
        key: sled::IVec,
        line: u64,
        record: &[u8],
    ) -> Result<(), StoreError> {
        let Some(bytes) = self.history_chunks.get(&key).map_err(self.read_err())? else {
            return Ok(());
        };
        let (entries, _) = decode_chunk(&bytes);
        let rewritten = encode_chunk(
            entries
                .iter()
                .map(|&(l, r)| (l, if l == line { record } else { r })),
        );
        self.history_chunks
            .insert(key, rewritten)
            .map_err(self.write_err())?;
        Ok(())
    }

    /// Packs the loose entries of the group starting at `group_start`
    /// into chunks, in one transaction. Records are moved as they are,
    /// unread: a damaged one stays damaged, and is skipped when read.
    pub(super) fn seal_group(&self, session: i64, group_start: u64) -> Result<(), StoreError> {
        let read = self.read_err();
        let low = history_key(session, group_start);
        let high = history_key(session, group_start.saturating_add(HISTORY_GROUP));
        let mut loose = Vec::new();
        for item in self.history.range(low..high) {
            let (key, value) = item.map_err(&read)?;
            // A key of another length can sort inside the range; it stays.
            if let Ok((_, line)) = parse_history_key(&key) {
                loose.push((key, line, value));
            }
        }
        if loose.is_empty() {
            return Ok(());
        }
        let mut number = match self.history_chunks.scan_prefix(low).keys().next_back() {
            Some(key) => parse_chunk_key(&key.map_err(&read)?).map_or(0, |(_, _, n)| n + 1),
            None => 0,
        };
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < loose.len() {
            let mut end = start + 1;
            let mut bytes = loose[start].2.len();
            while end < loose.len() && bytes + loose[end].2.len() <= CHUNK_BYTES {
                bytes += loose[end].2.len();
                end += 1;
            }
            let entries = loose[start..end].iter().map(|(_, l, v)| (*l, &v[..]));
            chunks.push((
                chunk_key(session, group_start, number),
                encode_chunk(entries),
            ));
            number += 1;
            start = end;
        }
        use sled::Transactional;
        let moved = (&self.history, &self.history_chunks).transaction(|(h, c)| {
            for (key, chunk) in &chunks {
                c.insert(&key[..], chunk.as_slice())?;
            }
            for (key, _, _) in &loose {
                h.remove(key)?;
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        });
        match moved {
            Ok(()) | Err(sled::transaction::TransactionError::Abort(())) => Ok(()),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(self.write_err()(e)),
        }
    }

    /// Seals every group that still has loose entries from a session
    /// before `current` (left by a previous run, or a store written
    /// before chunks).
    pub(super) fn seal_older_sessions(&self, current: i64) -> Result<(), StoreError> {
        let mut groups = Vec::new();
        for key in self.history.range(..history_key(current, 0)).keys() {
            let key = key.map_err(self.read_err())?;
            if let Ok((session, line)) = parse_history_key(&key) {
                let group = (session, group_of(line));
                if groups.last() != Some(&group) {
                    groups.push(group);
                }
            }
        }
        if groups.len() > 1 {
            // Once, for a store written a key per entry (a million cells:
            // seconds); afterwards only the last group of the last run.
            tracing::info!(
                path = %self.path.display(),
                groups = groups.len(),
                "packing history entries into chunks"
            );
        }
        for (session, group_start) in groups {
            self.seal_group(session, group_start)?;
        }
        Ok(())
    }

    /// History entries stored, counted (for a store without the count).
    pub(super) fn count_history(&self) -> usize {
        let chunked: u64 = self
            .history_chunks
            .iter()
            .values()
            .filter_map(Result::ok)
            .map(|v| codec::chunk_count(&v))
            .sum();
        self.history.len() + usize::try_from(chunked).unwrap_or(usize::MAX)
    }

    /// The newest session any history entry was stored under (0 if none).
    pub(super) fn last_history_session(&self) -> Result<i64, StoreError> {
        let loose = self.history.last().map_err(self.read_err())?;
        let chunked = self.history_chunks.last().map_err(self.read_err())?;
        let loose = loose.and_then(|(k, _)| parse_history_key(&k).ok().map(|(s, _)| s));
        let chunked = chunked.and_then(|(k, _)| parse_chunk_key(&k).ok().map(|(s, _, _)| s));
        Ok(loose.max(chunked).unwrap_or(0).max(0))
    }

    /// Every stored entry, newest first.
    pub(super) fn history_newest_first(&self) -> NewestFirst<'_> {
        NewestFirst::new(
            self,
            Vec::new(),
            self.history.iter(),
            Vec::new(),
            self.history_chunks.iter(),
        )
    }

    /// The entries `req` asks for, read from the store, oldest first;
    /// `current` is the current history session. Reads newest first and
    /// stops as soon as the selection is complete; a range reads only its
    /// own groups. Undecodable entries are left out (logged). Blocks on
    /// file I/O.
    pub fn select_history(
        &self,
        req: &HistoryRequest,
        current: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.select_history_below(req, current, Vec::new())
    }

    /// [`Store::select_history`] over `newer` (entries the store lacks,
    /// newest first) followed by the stored entries older than all of
    /// them.
    pub fn select_history_below(
        &self,
        req: &HistoryRequest,
        current: i64,
        newer: Vec<HistoryEntry>,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let below = newer.last().map(|e| (e.session, e.line));
        let mut stored = match req.hist_access_type {
            HistAccessType::Range => {
                let session = absolute_session(req.session, current);
                let start = u64::try_from(req.start).unwrap_or(0);
                let (end, last_group) = match req.stop {
                    Some(stop) => {
                        let stop = u64::try_from(stop).unwrap_or(0);
                        if stop <= start {
                            return Ok(Vec::new());
                        }
                        (history_key(session, stop), group_of(stop - 1))
                    }
                    None => (history_key(session.saturating_add(1), 0), u64::MAX),
                };
                let (loose_start, chunk_start) = (
                    history_key(session, start).to_vec(),
                    chunk_key(session, group_of(start), 0).to_vec(),
                );
                NewestFirst::new(
                    self,
                    loose_start.clone(),
                    self.history.range(loose_start..end.to_vec()),
                    chunk_start,
                    self.history_chunks.range(
                        chunk_key(session, group_of(start), 0)
                            ..=chunk_key(session, last_group, u32::MAX),
                    ),
                )
            }
            HistAccessType::Tail | HistAccessType::Search => self.history_newest_first(),
        };
        let mut failure = None;
        let stored = stored
            .by_ref()
            .map_while(|item| item.map_err(|e| failure = Some(e)).ok())
            .filter(|e| below.is_none_or(|below| (e.session, e.line) < below));
        let newest_first = newer.into_iter().chain(stored);
        let picked = select_from(newest_first, req, current);
        match failure {
            Some(e) => Err(e),
            None => Ok(picked),
        }
    }
}

/// Stored history entries newest first, merged from loose keys and
/// chunks a group at a time. Unreadable entries are logged, counted in
/// `skipped` and left out; a read error ends the iteration.
pub(super) struct NewestFirst<'a> {
    store: &'a Store,
    /// Where the walks start (inclusive): after each group they are made
    /// anew below it, so nothing is read twice.
    loose_start: Vec<u8>,
    chunk_start: Vec<u8>,
    loose: Peekable<Rev<sled::Iter>>,
    chunks: Peekable<Rev<sled::Iter>>,
    /// The group being handed out, oldest first (popped from the end).
    group: Vec<HistoryEntry>,
    failed: bool,
    pub skipped: usize,
}

/// A `(session, group start)` read from a key, or why it could not be.
type GroupOf = Option<Result<(i64, u64), String>>;

impl<'a> NewestFirst<'a> {
    fn new(
        store: &'a Store,
        loose_start: Vec<u8>,
        loose: sled::Iter,
        chunk_start: Vec<u8>,
        chunks: sled::Iter,
    ) -> NewestFirst<'a> {
        NewestFirst {
            store,
            loose_start,
            chunk_start,
            loose: loose.rev().peekable(),
            chunks: chunks.rev().peekable(),
            group: Vec::new(),
            failed: false,
            skipped: 0,
        }
    }

    fn skip(&mut self, why: &str) {
        self.skipped += 1;
        tracing::warn!(
            path = %self.store.path.display(),
            "skipping an unreadable history entry in the session store: {why}"
        );
    }

    fn loose_group(&mut self) -> GroupOf {
        let (key, _) = self.loose.peek()?.as_ref().ok()?;
        Some(
            parse_history_key(key)
                .map(|(s, l)| (s, group_of(l)))
                .map_err(|e| e.to_string()),
        )
    }

    fn chunk_group(&mut self) -> GroupOf {
        let (key, _) = self.chunks.peek()?.as_ref().ok()?;
        Some(
            parse_chunk_key(key)
                .map(|(s, g, _)| (s, g))
                .map_err(|e| e.to_string()),
        )
    }

    fn push(&mut self, session: i64, line: u64, record: &[u8]) {
        match HistoryRecord::decode(record) {
            Ok(r) => self.group.push(HistoryEntry {
                session,
                line,
                input: r.input,
                output: r.output,
                artifact: r.artifact,
            }),
            Err(e) => self.skip(&e.to_string()),
        }
    }

    /// Reads the next group (newest first) into `self.group`.
    fn fill(&mut self) -> Result<bool, StoreError> {
        loop {
            // A read error is taken off the iterator and returned.
            for source in [&mut self.loose, &mut self.chunks] {
                if let Some(Err(_)) = source.peek() {
                    if let Some(Err(e)) = source.next() {
                        return Err(self.store.read_err()(e));
                    }
                }
            }
            let (loose, chunked) = (self.loose_group(), self.chunk_group());
            if let Some(Err(why)) = &loose {
                self.loose.next();
                self.skip(why);
                continue;
            }
            if let Some(Err(why)) = &chunked {
                self.chunks.next();
                self.skip(why);
                continue;
            }
            let loose = loose.and_then(Result::ok);
            let chunked = chunked.and_then(Result::ok);
            let Some(group) = loose.max(chunked) else {
                return Ok(false);
            };
            // The group read whole, loose keys first, then chunks, so that
            // a seal running meanwhile (one transaction) leaves every entry
            // in one read or the other; then both walks go on below it.
            let (session, start) = group;
            let read = self.store.read_err();
            let low = history_key(session, start);
            let high = history_key(session, start.saturating_add(HISTORY_GROUP));
            let loose: Vec<_> = self
                .store
                .history
                .range(low..high)
                .collect::<Result<_, _>>()
                .map_err(&read)?;
            let chunks: Vec<_> = self
                .store
                .history_chunks
                .scan_prefix(low)
                .values()
                .collect::<Result<_, _>>()
                .map_err(&read)?;
            for (key, value) in loose {
                if let Ok((session, line)) = parse_history_key(&key) {
                    self.push(session, line, &value);
                }
            }
            let below = |from: &[u8], to: Vec<u8>| from.min(&to[..]).to_vec()..to;
            self.loose = self
                .store
                .history
                .range(below(&self.loose_start, low.to_vec()))
                .rev()
                .peekable();
            self.chunks = self
                .store
                .history_chunks
                .range(below(
                    &self.chunk_start,
                    chunk_key(session, start, 0).to_vec(),
                ))
                .rev()
                .peekable();
            for bytes in chunks {
                let (entries, damage) = decode_chunk(&bytes);
                for (line, record) in entries {
                    self.push(session, line, record);
                }
                if let Some(e) = damage {
                    self.skip(&format!("a chunk ends early: {e}"));
                }
            }
            self.group.sort_by_key(|e| e.line);
            self.group.dedup_by_key(|e| e.line);
            if !self.group.is_empty() {
                return Ok(true);
            }
        }
    }
}

impl Iterator for NewestFirst<'_> {
    type Item = Result<HistoryEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.group.pop() {
            return Some(Ok(entry));
        }
        if self.failed {
            return None;
        }
        match self.fill() {
            Ok(true) => self.group.pop().map(Ok),
            Ok(false) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
