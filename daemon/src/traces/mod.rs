//! OpenTelemetry traces: the kernel's `tracing` spans (request → cell →
//! skill run → phase → model call → sandbox run) become OTel spans,
//! exported over OTLP/HTTP when `[tracing] otlp_endpoint` is set.
//!
//! The spans themselves are written where the work is (each crate uses
//! plain `tracing`); this module only turns them into OTel spans and
//! ships them. Only spans of skillkernel's own crates are taken, never
//! log events or dependencies' spans. A W3C `traceparent` in a request's
//! metadata is attached by the kernel (`request_span`).

mod client;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter as _};
use opentelemetry_sdk::Resource;
use skillkernel_stdx::outlet::Outlet;
use thiserror::Error;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{DynFilterFn, LevelFilter};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::{Layer, Registry};

use crate::config::TracingConfig;

/// The path of the traces signal under a collector's base URL.
const TRACES_PATH: &str = "/v1/traces";
/// The queue's slots are allocated up front.
const MAX_QUEUE_SPANS: usize = 1_000_000;

#[derive(Debug, Error)]
pub enum TraceError {
    #[error("cannot set up the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("cannot start the trace export thread: {0}")]
    Thread(std::io::Error),
}

/// The layer that makes OTel spans, for the logging subscriber.
pub type TraceLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Running trace export. Shut it down at exit so queued spans go out.
pub struct Traces {
    provider: SdkTracerProvider,
    outlet: Arc<Outlet>,
    timeout: Duration,
}

impl Traces {
    /// Counts of spans exported and dropped, for status and metrics.
    pub fn outlet(&self) -> Arc<Outlet> {
        self.outlet.clone()
    }

    /// Sends what is queued, waiting at most about one export timeout.
    pub fn shutdown(self) {
        let wait = self.timeout + Duration::from_millis(500);
        if let Err(e) = self.provider.shutdown_with_timeout(wait) {
            tracing::warn!(error = %e, "traces still queued at exit were not all sent");
        }
    }
}

/// Checks `[tracing]` the way [`start`] will use it.
pub fn check(config: &TracingConfig) -> Result<(), String> {
    if let Some(endpoint) = &config.otlp_endpoint {
        traces_url(endpoint)?;
    }
    for (name, value) in &config.headers {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: {name:?} is not an HTTP header name"))?;
        http::HeaderValue::from_str(value)
            .map_err(|_| format!("headers: the value of {name:?} is not a valid header value"))?;
    }
    if !(1..=MAX_QUEUE_SPANS).contains(&config.max_queue_spans) {
        return Err(format!(
            "max_queue_spans must be between 1 and {MAX_QUEUE_SPANS}"
        ));
    }
    if !(config.export_timeout_secs > 0.0 && config.export_timeout_secs <= 600.0) {
        return Err("export_timeout_secs must be above 0 and at most 600".into());
    }
    if config.service_name.trim().is_empty() {
        return Err("service_name must not be empty".into());
    }
    Ok(())
}

/// The URL spans are posted to: a base URL gets `/v1/traces`, as the
/// OTLP exporter spec's `OTEL_EXPORTER_OTLP_ENDPOINT` does.
fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(endpoint.trim())
        .map_err(|e| format!("otlp_endpoint = {endpoint:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "otlp_endpoint = {endpoint:?} must be an http:// or https:// URL (OTLP/HTTP, like \"http://127.0.0.1:4318\")"
        ));
    }
    let mut url = url;
    if !url.path().ends_with(TRACES_PATH) {
        let path = format!("{}{TRACES_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url.to_string())
}

/// Starts trace export when `[tracing] otlp_endpoint` is set: the layer
/// to install with the logging subscriber, and the handle to shut it down.
pub fn start(config: &TracingConfig) -> Result<Option<(Traces, TraceLayer)>, TraceError> {
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let url = traces_url(endpoint).map_err(|message| TraceError::Exporter {
        endpoint: endpoint.clone(),
        message,
    })?;
    let timeout = Duration::from_secs_f64(config.export_timeout_secs);
    let exporter_error = |message: String| TraceError::Exporter {
        endpoint: url.clone(),
        message,
    };
    let client =
        client::CollectorClient::new(timeout).map_err(|e| exporter_error(e.to_string()))?;
    let last_error = client.last_error();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url.clone())
        .with_timeout(timeout)
        .with_headers(config.headers.clone().into_iter().collect())
        .build()
        .map_err(|e| exporter_error(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
            KeyValue::new("process.pid", i64::from(std::process::id())),
        ])
        .build();
    // The processor hands the exporter to its thread, so it is told the
    // resource here rather than through the provider.
    exporter.set_resource(&resource);
    // Shown in %status and logs: without credentials in the URL.
    let shown = crate::redact::redact_url(&url).into_owned();
    let outlet = Arc::new(Outlet::new("traces", shown));
    let processor = queue::QueueProcessor::start(
        exporter,
        config.max_queue_spans,
        timeout,
        outlet.clone(),
        last_error,
    )
    .map_err(TraceError::Thread)?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("skillkernel");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Spans carry what the code records; timing of idle stretches,
        // thread names and source locations would only cost.
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_context_activation(false)
        .with_filter(exported_spans())
        .boxed();
    Ok(Some((
        Traces {
            provider,
            outlet,
            timeout,
        },
        layer,
    )))
}

/// skillkernel's own spans at info level and above: decided once per
/// callsite (never per event), and with a level hint, so turning traces on
/// does not make every `debug!`/`trace!` in the process — dependencies'
/// `log` calls included — an enabled check.
fn exported_spans() -> impl Filter<Registry> + Send + Sync + 'static {
    fn wanted(meta: &Metadata<'_>) -> bool {
        meta.is_span() && meta.target().starts_with("skillkernel") && *meta.level() <= Level::INFO
    }
    DynFilterFn::new(|meta, _| wanted(meta))
        .with_callsite_filter(|meta| {
            if wanted(meta) {
                Interest::always()
            } else {
                Interest::never()
            }
        })
        .with_max_level_hint(LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_one_is_kept() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/prefix/").unwrap(),
            "https://otel.example/prefix/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/otlp?tenant=a").unwrap(),
            "http://c:4318/otlp/v1/traces?tenant=a"
        );
        assert!(traces_url("127.0.0.1:4318").is_err());
        assert!(traces_url("grpc://c:4317").is_err());
    }

    #[test]
    fn check_names_what_is_wrong() {
        let mut config = TracingConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            ..TracingConfig::default()
        };
        assert_eq!(check(&config), Ok(()));
        config.headers.insert("bad name".into(), "x".into());
        assert!(check(&config).unwrap_err().contains("bad name"));
        config.headers.clear();
        config.max_queue_spans = 0;
        assert!(check(&config).unwrap_err().contains("max_queue_spans"));
    }
}
