//! The prefix cache: the KV state of token sequences a model has run
//! (a finished generation's prompt and reply), kept so that a later
//! request starting with the same tokens — the same system prompt, a
//! skill's fixed template head, the conversation so far — copies those
//! positions instead of running them again.
//!
//! Entries are whole sequences keyed by their tokens; a lookup takes the
//! entry sharing the longest prefix with the prompt and copies that many
//! positions (copying is a memcpy; running them is a forward pass each).
//! The cache is bounded in bytes and evicts the least recently used
//! entry first; an entry another one extends is dropped as redundant. It
//! lives with its model, so unloading or reloading the model drops it.

use std::time::{Duration, Instant};

use super::model::{KvError, Sequence};

struct Entry {
    tokens: Vec<u32>,
    seq: Sequence,
    bytes: u64,
    used: Instant,
}

/// Cached sequences of one model.
pub struct PrefixCache {
    entries: Vec<Entry>,
    bytes: u64,
    limit: u64,
}

/// A prompt's start, found in the cache.
pub struct Hit {
    /// A copy of the cached positions the prompt starts with.
    pub seq: Sequence,
    /// How many (at most the prompt's length less one: the last prompt
    /// token always runs, for its logits).
    pub positions: usize,
}

fn common(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(a, b)| a == b).count()
}

impl PrefixCache {
    /// An empty cache holding at most `limit` bytes.
    pub fn new(limit: u64) -> PrefixCache {
        PrefixCache {
            entries: Vec::new(),
            bytes: 0,
            limit,
        }
    }

    /// A copy of the longest cached start of `prompt`, if any entry
    /// shares one.
    pub fn lookup(&mut self, prompt: &[u32]) -> Result<Option<Hit>, KvError> {
        let wanted = prompt.len().saturating_sub(1);
        let best = self
            .entries
            .iter_mut()
            .map(|e| (common(&e.tokens, prompt).min(wanted), e))
            .filter(|(n, _)| *n > 0)
            .max_by_key(|(n, e)| (*n, e.used));
        let Some((positions, entry)) = best else {
            return Ok(None);
        };
        entry.used = Instant::now();
        let seq = entry.seq.copy_prefix(positions)?;
        Ok(Some(Hit { seq, positions }))
    }

    /// Keeps `seq`, which holds the keys and values of `tokens`. An entry
    /// whose tokens begin the new ones is dropped (the new one serves all
    /// its lookups); if the new tokens begin an existing entry, that one
    /// is kept instead. Evicts the least recently used beyond the bound.
    pub fn insert(&mut self, mut tokens: Vec<u32>, mut seq: Sequence) {
        seq.truncate(tokens.len());
        if tokens.is_empty() || seq.len() < tokens.len() {
            return;
        }
        // Too long for the bound: keep the start that fits (a long
        // conversation still reuses most of itself next turn).
        let per_position = (seq.bytes() / seq.len() as u64).max(1);
        let fits = (self.limit / per_position) as usize;
        if fits < tokens.len() {
            tokens.truncate(fits);
            seq.truncate(fits);
            if tokens.is_empty() {
                return;
            }
        }
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.tokens.starts_with(&tokens))
        {
            e.used = Instant::now();
            return;
        }
        let before = self.entries.len();
        self.entries.retain(|e| !tokens.starts_with(&e.tokens));
        if self.entries.len() != before {
            self.recount();
        }
        let bytes = seq.bytes();
        if bytes > self.limit {
            return;
        }
        self.bytes += bytes;
        self.entries.push(Entry {
            tokens,
            seq,
            bytes,
            used: Instant::now(),
        });
        while self.bytes > self.limit {
            self.evict_oldest();
        }
    }

    /// Bounds the cache to `limit` bytes, evicting down to it now.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
        while self.bytes > self.limit {
            self.evict_oldest();
        }
    }

    fn recount(&mut self) {
        self.bytes = self.entries.iter().map(|e| e.bytes).sum();
    }

    /// When the least recently used entry was last used.
    pub fn oldest(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.used).min()
    }

    /// Drops the least recently used entry; the bytes freed.
    pub fn evict_oldest(&mut self) -> u64 {
        let Some(i) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used) else {
            return 0;
        };
        let freed = self.entries.swap_remove(i).bytes;
        self.bytes -= freed;
        freed
    }

    /// Drops entries unused for `idle`; the positions dropped.
    pub fn drop_idle(&mut self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut dropped = 0;
        self.entries.retain(|e| {
            let keep = now.duration_since(e.used) < idle;
            if !keep {
                dropped += e.seq.len();
            }
            keep
        });
        self.recount();
        dropped
    }

    /// Drops every entry; the positions dropped.
    pub fn clear(&mut self) -> usize {
        let dropped = self.positions();
        self.entries.clear();
        self.bytes = 0;
        dropped
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Positions held over all entries.
    pub fn positions(&self) -> usize {
        self.entries.iter().map(|e| e.seq.len()).sum()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
