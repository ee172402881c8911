//! Input history: what `history_request` and `%history` serve.
//!
//! Entries are numbered by execution count within a session. Session
//! numbers start at 1 and grow with each kernel start once state persists.

use serde_json::{json, Value};
use skillkernel_protocol::content::{HistAccessType, HistoryRequest};

/// One executed cell.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub session: i64,
    pub line: u64,
    pub input: String,
    /// A text summary of the output, if any.
    pub output: Option<String>,
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
const OUTPUT_SUMMARY_CHARS: usize = 2000;

impl History {
    /// Records an executed cell in the current session.
    pub fn record(&mut self, line: u64, input: &str) {
        self.entries.push(HistoryEntry {
            session: self.session,
            line,
            input: input.to_owned(),
            output: None,
        });
    }

    /// Attaches an output summary to the current session's `line`.
    pub fn set_output(&mut self, line: u64, output: &str) {
        let session = self.session;
        if let Some(e) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.session == session && e.line == line)
        {
            let summary: String = output.chars().take(OUTPUT_SUMMARY_CHARS).collect();
            e.output = Some(summary);
        }
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

    /// Entries whose input matches the glob `pattern`; the last `n` of them,
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

    /// Answers a `history_request` as `history_reply` rows.
    pub fn query(&self, req: &HistoryRequest) -> Vec<Value> {
        let entries = match req.hist_access_type {
            HistAccessType::Tail => self.tail(req.n.unwrap_or(10)),
            HistAccessType::Range => self.range(req.session, req.start, req.stop),
            HistAccessType::Search => {
                let pattern = req.pattern.as_deref().unwrap_or("*");
                self.search(pattern, req.n, req.unique)
            }
        };
        entries
            .into_iter()
            .map(|e| {
                if req.output {
                    json!([e.session, e.line, [e.input, e.output]])
                } else {
                    json!([e.session, e.line, e.input])
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        let mut h = History::default();
        h.record(1, "%set x = 1");
        h.record(2, "!echo hi");
        h.record(3, "%set x = 1");
        h.set_output(2, "hi\n");
        h
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
    }

    #[test]
    fn output_rows_pair_input_and_output() {
        let h = sample();
        let req: HistoryRequest = serde_json::from_value(json!({
            "hist_access_type": "range", "output": true, "raw": true,
            "session": 0, "start": 2, "stop": 3
        }))
        .unwrap();
        assert_eq!(h.query(&req), vec![json!([1, 2, ["!echo hi", "hi\n"]])]);
    }
}
