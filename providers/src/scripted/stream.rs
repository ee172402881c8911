//! The stream a scripted call hands out: pieces after the configured
//! waits, `Done` at the end or when cancelled, and the bookkeeping of
//! which calls are running.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::CallLog;
use crate::{GenerationStats, ProviderError, StreamEvent};

/// Marks a call running until its stream ends or is dropped.
pub(super) struct Running {
    log: Arc<CallLog>,
    index: usize,
    ended: bool,
}

impl Running {
    pub(super) fn start(log: &Arc<CallLog>, index: usize) -> Running {
        let now = log.running.fetch_add(1, Ordering::SeqCst) + 1;
        log.max_running.fetch_max(now, Ordering::SeqCst);
        Running {
            log: Arc::clone(log),
            index,
            ended: false,
        }
    }

    fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.log.running.fetch_sub(1, Ordering::SeqCst);
        if let Some(call) = self.log.lock().get_mut(self.index) {
            call.finished = Some(Instant::now());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.end();
    }
}

pub(super) struct Streaming {
    pub(super) pending: VecDeque<String>,
    pub(super) delay: Duration,
    pub(super) piece_delay: Duration,
    pub(super) first: bool,
    pub(super) cancel: CancellationToken,
    /// Taken when the stream ends.
    pub(super) stats: Option<GenerationStats>,
    pub(super) started: Instant,
    pub(super) running: Running,
}

impl Streaming {
    pub(super) async fn next(mut self) -> Option<(Result<StreamEvent, ProviderError>, Self)> {
        let mut stats = self.stats.take()?;
        let wait = match (self.first, self.pending.is_empty()) {
            (true, _) => self.delay,
            (false, false) => self.piece_delay,
            (false, true) => Duration::ZERO,
        };
        let cancelled = self.cancel.is_cancelled()
            || (!wait.is_zero()
                && tokio::select! {
                    _ = tokio::time::sleep(wait) => false,
                    _ = self.cancel.cancelled() => true,
                });
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        if !cancelled {
            if let Some(piece) = self.pending.pop_front() {
                if self.first {
                    stats.first_token_ms = Some(ms);
                    stats.prompt_ms = ms;
                }
                self.first = false;
                self.stats = Some(stats);
                return Some((Ok(StreamEvent::Text(piece)), self));
            }
        } else {
            stats.finish_reason = "cancelled".into();
        }
        stats.total_ms = ms;
        self.running.end();
        Some((Ok(StreamEvent::Done(stats)), self))
    }
}
