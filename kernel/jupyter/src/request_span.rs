//! The span each request is handled in: every log line written while
//! handling it carries its `msg_id`, and with trace export on it is the
//! root (or, under a W3C `traceparent` in the request's `metadata`, the
//! child of the caller's span) of the request's trace: request → cell →
//! skill run → phase → model call → sandbox run.
//!
//! The span is at ERROR level so that it exists whatever the log level:
//! a `warn` line written while handling a request must still say which
//! request it was.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde_json::{Map, Value};
use skillkernel_protocol::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span to handle `msg` (received on `channel`) in.
pub(crate) fn request_span(msg: &Message, channel: &'static str) -> tracing::Span {
    let span = tracing::error_span!(
        "request",
        otel.name = msg.msg_type(),
        otel.kind = "server",
        msg_type = %msg.msg_type(),
        msg_id = %msg.header.msg_id,
        session = %msg.header.session,
        channel = %channel,
    );
    if let Some(parent) = remote_parent(&msg.metadata) {
        // Fails only when trace export is off: then there is no trace.
        let _ = span.set_parent(parent);
    }
    span
}

/// The caller's span from `metadata.traceparent` (and `tracestate`), as
/// the W3C Trace Context spec writes them in HTTP headers.
fn remote_parent(metadata: &Map<String, Value>) -> Option<opentelemetry::Context> {
    let parent = metadata.get("traceparent")?.as_str()?;
    let (trace_id, span_id, flags) = parse_traceparent(parent)?;
    let state = metadata
        .get("tracestate")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let context = SpanContext::new(trace_id, span_id, flags, true, state);
    Some(opentelemetry::Context::new().with_remote_span_context(context))
}

/// `version-traceid-parentid-flags`, e.g.
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`. A later
/// version may append fields after a dash; an invalid header is ignored
/// (the request starts a trace of its own), as the spec asks.
fn parse_traceparent(header: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let header = header.trim();
    let mut parts = header.splitn(5, '-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    let rest = parts.next();
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    if !lower_hex(trace_id, 32) || !lower_hex(span_id, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id, span_id, TraceFlags::new(flags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_read_and_an_invalid_one_ignored() {
        let (trace, span, flags) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
        assert!(flags.is_sampled());
        // A later version may carry more fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tracestate_rides_along_with_the_parent() {
        let mut metadata = Map::new();
        metadata.insert(
            "traceparent".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        );
        metadata.insert("tracestate".into(), "vendor=abc".into());
        let cx = remote_parent(&metadata).unwrap();
        let span = cx.span();
        let parent = span.span_context();
        assert!(parent.is_remote());
        assert_eq!(parent.trace_state().get("vendor"), Some("abc"));
        assert!(remote_parent(&Map::new()).is_none());
    }
}
