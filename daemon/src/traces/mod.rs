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

/// Starts trace export when `[tracing] otlp_endpoint` is set: the layer
/// to install with the logging subscriber, and the handle to shut it down.
pub fn start(config: &TracingConfig) -> Result<Option<(Traces, TraceLayer)>, TraceError> {
    let Some(url) = config.traces_url() else {
        return Ok(None);
    };
    let url = url.map_err(|message| TraceError::Exporter {
        endpoint: config.otlp_endpoint.clone().unwrap_or_default(),
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
