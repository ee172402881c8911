//! Answering a `history_request` from the store, for the entries memory
//! no longer holds (see [`crate::history`]).

use skillkernel_protocol::content::{HistAccessType, HistoryRequest};

use super::codec::history_key;
use super::restore::decode_history;
use super::{Store, StoreError};
use crate::history::{absolute_session, select_from, HistoryEntry};

impl Store {
    /// The entries `req` asks for, read from the store, oldest first;
    /// `current` is the current history session. Reads newest first and
    /// stops as soon as the selection is complete; a range reads only its
    /// own keys. Undecodable entries are left out (logged). Blocks on
    /// file I/O.
    pub fn select_history(
        &self,
        req: &HistoryRequest,
        current: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let stored = match req.hist_access_type {
            HistAccessType::Range => {
                let session = absolute_session(req.session, current);
                let start = history_key(session, u64::try_from(req.start).unwrap_or(0));
                let end = match req.stop {
                    Some(stop) => history_key(session, u64::try_from(stop).unwrap_or(0)),
                    None => history_key(session.saturating_add(1), 0),
                };
                if end <= start {
                    return Ok(Vec::new());
                }
                self.history.range(start..end)
            }
            HistAccessType::Tail | HistAccessType::Search => self.history.iter(),
        };
        let mut failure = None;
        let newest_first = stored
            .rev()
            .map_while(|item| item.map_err(|e| failure = Some(e)).ok())
            .filter_map(|(key, value)| {
                decode_history(&key, &value)
                    .inspect_err(|e| {
                        tracing::warn!(
                            path = %self.path.display(),
                            "skipping an unreadable history entry in the session store: {e}"
                        )
                    })
                    .ok()
            });
        let picked = select_from(newest_first, req, current);
        match failure {
            Some(e) => Err((self.read_err())(e)),
            None => Ok(picked),
        }
    }
}
