//! One ledger record per generation, written by a stream wrapper when the
//! generation ends, fails, or is dropped half way (an interrupted cell):
//! a call that was cut short was still paid for.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chrono::Local;
use futures::Stream;

use super::{Caller, Ledger, UsageRecord};
use crate::config::Price;
use crate::{CompletionRequest, GenerationStats, ProviderError, StreamEvent, TokenStream};

/// What is known of a call before it answers.
#[derive(Debug, Clone)]
pub struct Draft {
    pub caller: Caller,
    pub backend: String,
    pub model: String,
    pub profile: Option<String>,
    pub price: Option<Price>,
    /// Prompt tokens to record when the call ends without the backend's
    /// count.
    pub prompt_estimate: u32,
    pub started: Instant,
}

impl Draft {
    fn finish(self, stats: Option<&GenerationStats>, seen: &Seen, reason: &str) -> UsageRecord {
        let now = Local::now();
        let (prompt_tokens, completion_tokens) = match stats {
            Some(s) => (s.prompt_tokens, s.completion_tokens),
            // About four bytes a token: what was streamed before the end.
            None => (self.prompt_estimate, seen.text_bytes.div_ceil(4) as u32),
        };
        let cached = stats.is_some_and(|s| s.cached);
        let cost = self.price.map(|p| match cached {
            true => 0.0,
            false => p.cost(prompt_tokens, completion_tokens),
        });
        UsageRecord {
            at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            day: now.date_naive(),
            session: self.caller.session,
            skill: self.caller.skill,
            backend: self.backend,
            model: self.model,
            profile: self.profile,
            prompt_tokens,
            completion_tokens,
            first_token_ms: stats.and_then(|s| s.first_token_ms).or(seen.first_token_ms),
            total_ms: stats.map_or_else(|| ms_since(self.started), |s| s.total_ms),
            finish_reason: stats.map_or_else(|| reason.to_owned(), |s| s.finish_reason.clone()),
            cached,
            cost,
        }
    }
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

/// What the wrapper saw go by.
#[derive(Debug, Default)]
struct Seen {
    text_bytes: usize,
    first_token_ms: Option<f64>,
}

struct Recorded {
    inner: TokenStream,
    ledger: Arc<Ledger>,
    /// Taken when the record is written, so it is written once.
    draft: Option<Draft>,
    seen: Seen,
}

impl Recorded {
    fn write(&mut self, stats: Option<&GenerationStats>, reason: &str) {
        let Some(draft) = self.draft.take() else {
            return;
        };
        let record = draft.finish(stats, &self.seen, reason);
        if let Err(e) = self.ledger.append(&record) {
            tracing::warn!(
                dir = %self.ledger.dir().display(),
                error = %e,
                "could not record model usage; the answer is unaffected"
            );
        }
    }
}

impl Stream for Recorded {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(StreamEvent::Text(piece)))) => {
                if self.seen.first_token_ms.is_none() && !piece.is_empty() {
                    let started = self.draft.as_ref().map(|d| d.started);
                    self.seen.first_token_ms = started.map(ms_since);
                }
                self.seen.text_bytes += piece.len();
            }
            Poll::Ready(Some(Ok(StreamEvent::Done(stats)))) => {
                let stats = stats.clone();
                self.write(Some(&stats), "stop");
            }
            Poll::Ready(Some(Ok(StreamEvent::ToolCall(_)))) => {}
            Poll::Ready(Some(Err(ProviderError::Cancelled))) => self.write(None, "cancelled"),
            Poll::Ready(Some(Err(_))) => self.write(None, "error"),
            Poll::Ready(None) => self.write(None, "error"),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.write(None, "cancelled");
    }
}

/// A rough prompt size for calls that end without the backend's count:
/// four characters a token.
pub(crate) fn prompt_estimate(request: &CompletionRequest) -> u32 {
    let chars: usize = request
        .messages
        .iter()
        .map(|m| m.content.chars().count())
        .sum();
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

/// `inner`, writing one record to `ledger` when it ends.
pub fn recorded(inner: TokenStream, ledger: Arc<Ledger>, draft: Draft) -> TokenStream {
    Box::pin(Recorded {
        inner,
        ledger,
        draft: Some(draft),
        seen: Seen::default(),
    })
}
