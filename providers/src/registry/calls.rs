//! Counters of model calls per backend and model, for the metrics
//! endpoint: calls, how they ended, tokens, time to first token and
//! decode time (tokens per second is their ratio, as Prometheus rates
//! are). Counting is a map lookup and relaxed atomic adds; the stream
//! wrapper counts a call when it ends, however it ends.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures::Stream;
use skillkernel_stdx::prometheus::{Histogram, HistogramValues};

use crate::{ProviderError, StreamEvent, TokenStream};

/// Distinct backend/model pairs counted apart; the rest are counted
/// together under `other`, so a label's values stay bounded.
const MAX_MODELS: usize = 64;

/// Upper bounds (seconds) of the time-to-first-token buckets.
pub const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    Error,
    Cancelled,
    /// Answered from the response cache: the backend did no work, so
    /// its tokens and times are not counted.
    Cached,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 4] = [
        CallOutcome::Ok,
        CallOutcome::Error,
        CallOutcome::Cancelled,
        CallOutcome::Cached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::Cached => "cached",
        }
    }
}

/// One backend/model's counters.
#[derive(Debug)]
pub struct ModelCounters {
    calls: [AtomicU64; 4],
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    decode_micros: AtomicU64,
    first_token: Histogram,
}

impl Default for ModelCounters {
    fn default() -> Self {
        ModelCounters {
            calls: Default::default(),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            decode_micros: AtomicU64::new(0),
            first_token: Histogram::new(FIRST_TOKEN_BUCKETS),
        }
    }
}

impl ModelCounters {
    fn ended(&self, outcome: CallOutcome) {
        self.calls[outcome as usize].fetch_add(1, Relaxed);
    }

    fn done(&self, stats: &crate::GenerationStats) {
        if stats.cached {
            return self.ended(CallOutcome::Cached);
        }
        // Backends end an interrupted generation with a `Done` too.
        if stats.finish_reason == "cancelled" {
            return self.ended(CallOutcome::Cancelled);
        }
        self.ended(CallOutcome::Ok);
        self.prompt_tokens
            .fetch_add(u64::from(stats.prompt_tokens), Relaxed);
        self.completion_tokens
            .fetch_add(u64::from(stats.completion_tokens), Relaxed);
        if let Some(first) = stats.first_token_ms {
            self.first_token.observe(first / 1e3);
            let decode_ms = (stats.total_ms - first).max(0.0);
            self.decode_micros
                .fetch_add((decode_ms * 1e3) as u64, Relaxed);
        }
    }
}

/// Every backend/model's counters. Shared across reloads.
#[derive(Debug, Default)]
pub struct ModelCalls {
    by_model: RwLock<HashMap<(String, String), Arc<ModelCounters>>>,
}

/// One backend/model's figures as they stood.
#[derive(Debug, Clone)]
pub struct ModelCallFigures {
    pub backend: String,
    pub model: String,
    /// Calls by outcome, in [`CallOutcome::ALL`]'s order.
    pub calls: [u64; 4],
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Time from the first token to the last, summed over calls.
    pub decode_seconds: f64,
    pub first_token_seconds: HistogramValues,
}

impl ModelCalls {
    /// The counters of `backend`/`model` (or of `other`/`other` once
    /// [`MAX_MODELS`] pairs are counted).
    pub fn counters(&self, backend: &str, model: &str) -> Arc<ModelCounters> {
        let key = (backend.to_owned(), model.to_owned());
        if let Some(c) = skillkernel_stdx::read(&self.by_model).get(&key) {
            return c.clone();
        }
        let mut map = skillkernel_stdx::write(&self.by_model);
        let key = if map.len() >= MAX_MODELS && !map.contains_key(&key) {
            ("other".to_owned(), "other".to_owned())
        } else {
            key
        };
        map.entry(key).or_default().clone()
    }

    /// A call that failed before it streamed anything.
    pub fn failed(&self, backend: &str, model: &str, e: &ProviderError) {
        let outcome = match e {
            ProviderError::Cancelled => CallOutcome::Cancelled,
            _ => CallOutcome::Error,
        };
        self.counters(backend, model).ended(outcome);
    }

    pub fn figures(&self) -> Vec<ModelCallFigures> {
        let map = skillkernel_stdx::read(&self.by_model);
        let mut figures: Vec<ModelCallFigures> = map
            .iter()
            .map(|((backend, model), c)| ModelCallFigures {
                backend: backend.clone(),
                model: model.clone(),
                calls: [0, 1, 2, 3].map(|i| c.calls[i].load(Relaxed)),
                prompt_tokens: c.prompt_tokens.load(Relaxed),
                completion_tokens: c.completion_tokens.load(Relaxed),
                decode_seconds: c.decode_micros.load(Relaxed) as f64 / 1e6,
                first_token_seconds: c.first_token.values(),
            })
            .collect();
        figures.sort_by(|a, b| (&a.backend, &a.model).cmp(&(&b.backend, &b.model)));
        figures
    }
}

/// The span of one model call: from the request to the answer's end.
pub fn call_span(backend: &str, model: &str, profile: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "model_call",
        backend,
        model,
        profile,
        prompt_tokens = tracing::field::Empty,
        completion_tokens = tracing::field::Empty,
        first_token_ms = tracing::field::Empty,
        finish_reason = tracing::field::Empty,
        cached = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    )
}

/// Marks `span` failed with `e` (a cancellation is not a failure).
pub fn record_failure(span: &tracing::Span, e: &ProviderError) {
    if matches!(e, ProviderError::Cancelled) {
        span.record("finish_reason", "cancelled");
    } else {
        skillkernel_stdx::span::mark_failed(span, e);
    }
}

/// `inner`, counted in `counters` when it ends; `span` ends with it.
pub fn counted(
    inner: TokenStream,
    counters: Arc<ModelCounters>,
    span: tracing::Span,
) -> TokenStream {
    Box::pin(Counted {
        inner,
        counters: Some(counters),
        span: Some(span),
    })
}

struct Counted {
    inner: TokenStream,
    /// Taken when the call is counted, so it is counted once.
    counters: Option<Arc<ModelCounters>>,
    /// Dropped (ended) when the answer ends, not when the stream is.
    span: Option<tracing::Span>,
}

impl Stream for Counted {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = match &this.span {
            Some(span) => span.in_scope(|| this.inner.as_mut().poll_next(cx)),
            None => this.inner.as_mut().poll_next(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(StreamEvent::Done(stats)))) => {
                if let Some(span) = self.span.take() {
                    // As i64: OTel has no unsigned attributes.
                    span.record("prompt_tokens", i64::from(stats.prompt_tokens))
                        .record("completion_tokens", i64::from(stats.completion_tokens))
                        .record("finish_reason", stats.finish_reason.as_str())
                        .record("cached", stats.cached);
                    if let Some(ms) = stats.first_token_ms {
                        span.record("first_token_ms", ms);
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(span) = self.span.take() {
                    record_failure(&span, e);
                }
            }
            Poll::Ready(None) => {
                if let Some(span) = self.span.take() {
                    skillkernel_stdx::span::mark_failed(
                        &span,
                        "the answer ended without finishing",
                    );
                }
            }
            _ => {}
        }
        let ended = match &polled {
            Poll::Ready(Some(Ok(StreamEvent::Done(stats)))) => {
                if let Some(c) = self.counters.take() {
                    c.done(stats);
                }
                None
            }
            Poll::Ready(Some(Err(ProviderError::Cancelled))) => Some(CallOutcome::Cancelled),
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Some(CallOutcome::Error),
            _ => None,
        };
        if let Some(outcome) = ended {
            if let Some(c) = self.counters.take() {
                c.ended(outcome);
            }
        }
        polled
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // Dropped before its end: the caller stopped reading.
        if let Some(span) = &self.span {
            span.record("finish_reason", "cancelled");
        }
        if let Some(c) = self.counters.take() {
            c.ended(CallOutcome::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn done() -> crate::GenerationStats {
        crate::GenerationStats {
            prompt_tokens: 5,
            completion_tokens: 11,
            prompt_ms: 10.0,
            first_token_ms: Some(40.0),
            total_ms: 140.0,
            finish_reason: "stop".into(),
            cached: false,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn calls_are_counted_once_by_how_they_end() {
        let calls = ModelCalls::default();
        let ok: TokenStream = Box::pin(futures::stream::iter(vec![
            Ok(StreamEvent::Text("hi".into())),
            Ok(StreamEvent::Done(done())),
        ]));
        let _: Vec<_> = counted(ok, calls.counters("candle", "m"), tracing::Span::none())
            .collect()
            .await;
        let failing: TokenStream = Box::pin(futures::stream::iter(vec![Err(
            ProviderError::Inference("boom".into()),
        )]));
        let _: Vec<_> = counted(
            failing,
            calls.counters("candle", "m"),
            tracing::Span::none(),
        )
        .collect()
        .await;
        let abandoned: TokenStream = Box::pin(futures::stream::pending());
        drop(counted(
            abandoned,
            calls.counters("candle", "m"),
            tracing::Span::none(),
        ));
        calls.failed("candle", "m", &ProviderError::Cancelled);
        let f = &calls.figures()[0];
        assert_eq!(f.calls, [1, 1, 2, 0]);
        assert_eq!((f.prompt_tokens, f.completion_tokens), (5, 11));
        assert!((f.decode_seconds - 0.1).abs() < 1e-9);
        assert_eq!(f.first_token_seconds.count, 1);
        for i in 0..MAX_MODELS + 3 {
            calls.counters("b", &format!("m{i}"));
        }
        assert_eq!(
            calls.figures().len(),
            MAX_MODELS + 1,
            "64 pairs and `other`"
        );
        assert!(calls.figures().iter().any(|f| f.model == "other"));
    }
}
