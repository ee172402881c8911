//! The one convention for marking a `tracing` span failed, so trace
//! exporters (tracing-opentelemetry) give it status ERROR with the reason.
//! The span must declare `otel.status_code` and `otel.status_description`
//! (as `tracing::field::Empty`): tracing ignores fields a span did not
//! declare.

use std::fmt::Display;

/// Marks `span` failed because of `why`.
pub fn mark_failed(span: &tracing::Span, why: impl Display) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", tracing::field::display(why));
}
