//! Input history: what `history_request` and `%history` serve.
//!
//! Entries are numbered by execution count within a session. Session
//! numbers start at 1 and grow with each kernel start of a persisted
//! session (the store keeps it). An entry keeps a summary of its output;
//! a longer output is kept whole as an artifact in the store, and the
//! entry holds its id.

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

/// The history of every session this kernel knows.
#[derive(Debug, Clone)]
pub struct History {
    /// The current session's number.
    pub session: i64,
    entries: Vec<HistoryEntry>,
}

impl Default for History {
    fn default() -> Self {
        History {
            session: 1,
            entries: Vec::new(),
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
    /// A history restored from the store, continuing as `session`.
    pub fn restored(session: i64, entries: Vec<HistoryEntry>) -> History {
        History { session, entries }
    }

    /// Records an executed cell in the current session.
    pub fn record(&mut self, line: u64, input: &str) -> &HistoryEntry {
        self.entries.push(HistoryEntry {
            session: self.session,
            line,
            input: input.to_owned(),
            output: None,
            artifact: None,
        });
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

    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// The last `n` entries over all sessions.
    pub fn tail(&self, n: usize) -> Vec<&HistoryEntry> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries.iter().skip(skip).collect()
    }

    /// Entries of `session` (0 = current, negative = that many back) with
    /// `start <= line < stop`.
    pub fn range(&self, session: i64, start: i64, stop: Option<i64>) -> Vec<&HistoryEntry> {
        let session = if session <= 0 {
            self.session + session
        } else {
            session
        };
        self.entries
            .iter()
            .filter(|e| e.session == session)
            .filter(|e| e.line as i64 >= start && stop.is_none_or(|s| (e.line as i64) < s))
            .collect()
    }

    /// Entries whose input matches the glob `pattern` (whole input, as a
    /// `history_request` search asks); the last `n` of them,
    /// each distinct input once when `unique` (its latest occurrence).
    pub fn search(&self, pattern: &str, n: Option<usize>, unique: bool) -> Vec<&HistoryEntry> {
        let Ok(glob) = glob::Pattern::new(pattern) else {
            return Vec::new();
        };
        let mut hits: Vec<&HistoryEntry> = self
            .entries
            .iter()
            .filter(|e| glob.matches(&e.input))
            .collect();
        if unique {
            let mut seen = std::collections::HashSet::new();
            let mut kept: Vec<&HistoryEntry> = hits
                .into_iter()
                .rev()
                .filter(|e| seen.insert(e.input.as_str()))
                .collect();
            kept.reverse();
            hits = kept;
        }
        if let Some(n) = n {
            let skip = hits.len().saturating_sub(n);
            hits.drain(..skip);
        }
        hits
    }

    /// The entries a `history_request` asks for.
    pub fn select(&self, req: &HistoryRequest) -> Vec<HistoryEntry> {
        let entries = match req.hist_access_type {
            HistAccessType::Tail => self.tail(req.n.unwrap_or(10)),
            HistAccessType::Range => self.range(req.session, req.start, req.stop),
            HistAccessType::Search => {
                let pattern = req.pattern.as_deref().unwrap_or("*");
                self.search(pattern, req.n, req.unique)
            }
        };
        entries.into_iter().cloned().collect()
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
        let lines: Vec<u64> = h.tail(2).iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3]);
    }

    #[test]
    fn range_is_half_open_and_current_session_is_zero() {
        let h = sample();
        let lines: Vec<u64> = h.range(0, 2, Some(3)).iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2]);
        assert_eq!(h.range(1, 1, None).len(), 3);
    }

    #[test]
    fn search_globs_dedups_and_limits() {
        let h = sample();
        assert_eq!(h.search("%set*", None, false).len(), 2);
        let unique = h.search("%set*", None, true);
        assert_eq!(unique.len(), 1);
        assert_eq!(unique[0].line, 3, "keeps the latest occurrence");
        assert_eq!(h.search("*", Some(1), false)[0].line, 3);
        assert!(
            h.search("echo", None, false).is_empty(),
            "the pattern is taken as given (`%history -g` adds the `*`s)"
        );
    }

    #[test]
    fn output_rows_pair_input_and_output() {
        let h = sample();
        let req: HistoryRequest = serde_json::from_value(json!({
            "hist_access_type": "range", "output": true, "raw": true,
            "session": 0, "start": 2, "stop": 3
        }))
        .unwrap();
        let rows = rows(&h.select(&req), req.output);
        assert_eq!(rows, vec![json!([1, 2, ["!echo hi", "hi\n"]])]);
    }
}
