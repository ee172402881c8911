//! Input history: what `history_request` and `%history` serve.
//!
//! Entries are numbered by execution count within a session. Session
//! numbers start at 1 and grow with each kernel start of a persisted
//! session (the store keeps it). An entry keeps a summary of its output;
//! a longer output is kept whole as an artifact in the store, and the
//! entry holds its id.
//!
//! Memory holds only the newest entries ([`History::cap`]); when the store
//! holds the rest, a request that reaches further back is answered from
//! the store ([`History::covers`] tells which). The selection itself
//! ([`select_from`]) reads entries newest first from either source, so a
//! `%history -g` over a million cells stops as soon as it has its `n`.

use std::collections::{HashSet, VecDeque};

use serde_json::{json, Value};
use skillkernel_protocol::content::{HistAccessType, HistoryRequest};

use crate::artifact_id::ArtifactId;

/// One executed cell.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub session: i64,
    pub line: u64,
    pub input: String,
    /// A text summary of the output, if any.
    pub output: Option<String>,
    /// The whole output, stored as an artifact, when the summary is not all of it.
    pub artifact: Option<ArtifactId>,
}

/// Entries kept in memory when the store holds every entry.
pub const MEMORY_TAIL_STORED: usize = 1000;
/// Entries kept in memory when nothing else keeps them: older ones are
/// forgotten.
pub const MEMORY_TAIL_ALONE: usize = 10_000;

/// The history this kernel knows: the newest entries in memory, and how
/// many there are in all.
#[derive(Debug, Clone)]
pub struct History {
    /// The current session's number.
    pub session: i64,
    /// The newest entries, oldest first, at most `cap`.
    entries: VecDeque<HistoryEntry>,
    /// Every entry recorded or restored, including those only in the store.
    total: usize,
    cap: usize,
}

impl Default for History {
    fn default() -> Self {
        History {
            session: 1,
            entries: VecDeque::new(),
            total: 0,
            cap: MEMORY_TAIL_ALONE,
        }
    }
}

/// Longest output summary kept per entry.
pub const OUTPUT_SUMMARY_CHARS: usize = 2000;

/// `output` cut to the summary length; true when that cut something off.
pub fn summarize(output: &str) -> (String, bool) {
    match output.char_indices().nth(OUTPUT_SUMMARY_CHARS) {
        Some((end, _)) => (output[..end].to_owned(), true),
        None => (output.to_owned(), false),
    }
}

impl History {
    /// A history restored from the store, continuing as `session`: its
    /// newest entries (oldest first) and how many the store holds in all.
    /// Only [`MEMORY_TAIL_STORED`] stay in memory.
    pub fn restored(session: i64, newest: Vec<HistoryEntry>, total: usize) -> History {
        let mut history = History {
            session,
            entries: newest.into(),
            total,
            cap: MEMORY_TAIL_STORED,
        };
        history.trim();
        history
    }

    /// Keeps at most `cap` entries in memory from now on.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
        self.trim();
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    fn trim(&mut self) {
        while self.entries.len() > self.cap {
            self.entries.pop_front();
        }
    }

    /// Records an executed cell in the current session.
    pub fn record(&mut self, line: u64, input: &str) -> &HistoryEntry {
        self.entries.push_back(HistoryEntry {
            session: self.session,
            line,
            input: input.to_owned(),
            output: None,
            artifact: None,
        });
        self.total += 1;
        self.trim();
        &self.entries[self.entries.len() - 1]
    }

    /// Attaches an output summary (and the artifact holding the whole
    /// output, if any) to the current session's `line`.
    pub fn set_output(
        &mut self,
        line: u64,
        summary: String,
        artifact: Option<ArtifactId>,
    ) -> Option<&HistoryEntry> {
        let session = self.session;
        let entry = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.session == session && e.line == line)?;
        entry.output = Some(summary);
        entry.artifact = artifact;
        Some(entry)
    }

    /// Every entry, in memory or not.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Entries held in memory.
    pub fn in_memory(&self) -> usize {
        self.entries.len()
    }

    /// The entries in memory, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = HistoryEntry> + '_ {
        self.entries.iter().rev().cloned()
    }

    /// Whether memory alone answers `req` as the whole history would.
    pub fn covers(&self, req: &HistoryRequest) -> bool {
        if self.entries.len() == self.total {
            return true;
        }
        match req.hist_access_type {
            HistAccessType::Tail => req.n.unwrap_or(10) <= self.entries.len(),
            HistAccessType::Range => self.entries.front().is_some_and(|oldest| {
                let start = u64::try_from(req.start).unwrap_or(0);
                (absolute_session(req.session, self.session), start)
                    >= (oldest.session, oldest.line)
            }),
            HistAccessType::Search => false,
        }
    }
}

/// `session` of a request as a number, given the `current` one: 0 is the
/// current session, negative that many back.
pub fn absolute_session(session: i64, current: i64) -> i64 {
    if session <= 0 {
        current + session
    } else {
        session
    }
}

/// The entries `req` asks for, from `newest_first` (entries in
/// descending session/line order), oldest first. `current` is the current
/// session's number.
pub fn select_from(
    newest_first: impl Iterator<Item = HistoryEntry>,
    req: &HistoryRequest,
    current: i64,
) -> Vec<HistoryEntry> {
    let mut picked: Vec<HistoryEntry> = match req.hist_access_type {
        HistAccessType::Tail => newest_first.take(req.n.unwrap_or(10)).collect(),
        HistAccessType::Range => {
            let session = absolute_session(req.session, current);
            newest_first
                .skip_while(|e| e.session > session)
                .take_while(|e| e.session == session)
                .filter(|e| {
                    e.line as i64 >= req.start && req.stop.is_none_or(|s| (e.line as i64) < s)
                })
                .collect()
        }
        HistAccessType::Search => {
            let pattern = req.pattern.as_deref().unwrap_or("*");
            let Ok(glob) = glob::Pattern::new(pattern) else {
                return Vec::new();
            };
            let mut seen = HashSet::new();
            let hits = newest_first
                .filter(|e| glob.matches(&e.input))
                // Each distinct input once: its latest occurrence.
                .filter(|e| !req.unique || seen.insert(e.input.clone()));
            match req.n {
                Some(n) => hits.take(n).collect(),
                None => hits.collect(),
            }
        }
    };
    picked.reverse();
    picked
}

impl History {
    /// The entries a `history_request` asks for, from memory alone (see
    /// [`History::covers`]).
    pub fn select(&self, req: &HistoryRequest) -> Vec<HistoryEntry> {
        select_from(self.newest_first(), req, self.session)
    }
}

/// `history_reply` rows: `[session, line, input]`, or with `output`
/// `[session, line, [input, output]]`.
pub fn rows(entries: &[HistoryEntry], output: bool) -> Vec<Value> {
    entries
        .iter()
        .map(|e| {
            if output {
                json!([e.session, e.line, [e.input, e.output]])
            } else {
                json!([e.session, e.line, e.input])
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        let mut h = History::default();
        h.record(1, "%set x = 1");
        h.record(2, "!echo hi");
        h.record(3, "%set x = 1");
        h.set_output(2, "hi\n".into(), None);
        h
    }

    fn request(value: Value) -> HistoryRequest {
        serde_json::from_value(value).unwrap()
    }

    fn lines(entries: &[HistoryEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.line).collect()
    }

    #[test]
    fn summaries_keep_the_first_characters_and_say_when_cut() {
        assert_eq!(summarize("short"), ("short".to_owned(), false));
        let exact = "é".repeat(OUTPUT_SUMMARY_CHARS);
        assert_eq!(summarize(&exact), (exact.clone(), false));
        let (cut, was_cut) = summarize(&format!("{exact}more"));
        assert_eq!((cut, was_cut), (exact, true));
    }

    #[test]
    fn tail_returns_last_entries_in_order() {
        let h = sample();
        let got = h.select(&request(json!({"hist_access_type": "tail", "n": 2})));
        assert_eq!(lines(&got), vec![2, 3]);
    }

    #[test]
    fn range_is_half_open_and_current_session_is_zero() {
        let h = sample();
        let got = h.select(&request(
            json!({"hist_access_type": "range", "session": 0, "start": 2, "stop": 3}),
        ));
        assert_eq!(lines(&got), vec![2]);
        let all = h.select(&request(
            json!({"hist_access_type": "range", "session": 1, "start": 1}),
        ));
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn search_globs_dedups_and_limits() {
        let h = sample();
        let search = |pattern: &str, n: Option<usize>, unique: bool| {
            h.select(&request(json!({"hist_access_type": "search",
                "pattern": pattern, "n": n, "unique": unique})))
        };
        assert_eq!(search("%set*", None, false).len(), 2);
        let unique = search("%set*", None, true);
        assert_eq!(lines(&unique), vec![3], "keeps the latest occurrence");
        assert_eq!(lines(&search("*", Some(1), false)), vec![3]);
        assert!(
            search("echo", None, false).is_empty(),
            "the pattern is taken as given (`%history -g` adds the `*`s)"
        );
    }

    #[test]
    fn memory_keeps_the_newest_entries_and_says_what_it_cannot_answer() {
        let mut h = History::restored(2, Vec::new(), 5000);
        h.set_cap(3);
        for line in 1..=10 {
            h.record(line, &format!("cell {line}"));
        }
        assert_eq!((h.len(), h.in_memory()), (5010, 3));
        let tail = |n: usize| request(json!({"hist_access_type": "tail", "n": n}));
        assert!(h.covers(&tail(3)));
        assert!(!h.covers(&tail(4)));
        let range = |start: i64| {
            request(json!({"hist_access_type": "range", "session": 0, "start": start}))
        };
        assert!(h.covers(&range(8)));
        assert!(!h.covers(&range(7)));
        assert!(!h.covers(&request(
            json!({"hist_access_type": "search", "pattern": "*"})
        )));
        assert_eq!(lines(&h.select(&range(8))), vec![8, 9, 10]);
    }

    #[test]
    fn a_history_wholly_in_memory_answers_everything() {
        let h = sample();
        assert!(h.covers(&request(
            json!({"hist_access_type": "search", "pattern": "*"})
        )));
        assert!(h.covers(&request(json!({"hist_access_type": "tail", "n": 100}))));
    }

    #[test]
    fn output_rows_pair_input_and_output() {
        let h = sample();
        let req = request(json!({
            "hist_access_type": "range", "output": true, "raw": true,
            "session": 0, "start": 2, "stop": 3
        }));
        let rows = rows(&h.select(&req), req.output);
        assert_eq!(rows, vec![json!([1, 2, ["!echo hi", "hi\n"]])]);
    }
}
