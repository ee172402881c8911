//! `[tracing]`: where OpenTelemetry traces go (docs/operations.md,
//! "Traces"), and the checks on it. The exporter itself is
//! `crate::traces`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The path of the traces signal under a collector's base URL.
const TRACES_PATH: &str = "/v1/traces";
/// The queue's slots are bounded: ended spans beyond it are dropped.
const MAX_QUEUE_SPANS: usize = 1_000_000;

/// `[tracing]`: OpenTelemetry traces. Off unless `otlp_endpoint` is set.
/// Takes effect at the next start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Where spans go over OTLP/HTTP (protobuf): a collector's base URL
    /// such as `http://127.0.0.1:4318` (`/v1/traces` is added), or the full
    /// URL of its traces path.
    pub otlp_endpoint: Option<String>,
    /// Extra HTTP headers sent with each export, e.g. an API key.
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Ended spans waiting for export or being exported; beyond this
    /// they are dropped.
    pub max_queue_spans: usize,
    /// One export waits this long for the collector, then its spans are
    /// dropped.
    pub export_timeout_secs: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            headers: BTreeMap::new(),
            service_name: "skillkernel".into(),
            max_queue_spans: 4096,
            export_timeout_secs: 5.0,
        }
    }
}

impl TracingConfig {
    /// Checks `[tracing]` the way the exporter will use it.
    pub fn check(&self) -> Result<(), String> {
        if let Some(url) = self.traces_url() {
            url?;
        }
        for (name, value) in &self.headers {
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not an HTTP header name"))?;
            http::HeaderValue::from_str(value).map_err(|_| {
                format!("headers: the value of {name:?} is not a valid header value")
            })?;
        }
        if !(1..=MAX_QUEUE_SPANS).contains(&self.max_queue_spans) {
            return Err(format!(
                "max_queue_spans must be between 1 and {MAX_QUEUE_SPANS}"
            ));
        }
        if !(self.export_timeout_secs > 0.0 && self.export_timeout_secs <= 600.0) {
            return Err("export_timeout_secs must be above 0 and at most 600".into());
        }
        if self.service_name.trim().is_empty() {
            return Err("service_name must not be empty".into());
        }
        Ok(())
    }

    /// The URL spans are posted to, when an endpoint is set: a base URL
    /// gets `/v1/traces`, as the OTLP exporter spec's
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` does.
    pub fn traces_url(&self) -> Option<Result<String, String>> {
        self.otlp_endpoint.as_deref().map(traces_url)
    }
}

fn traces_url(endpoint: &str) -> Result<String, String> {
    let mut url = reqwest::Url::parse(endpoint.trim())
        .map_err(|e| format!("otlp_endpoint = {endpoint:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "otlp_endpoint = {endpoint:?} must be an http:// or https:// URL (OTLP/HTTP, like \"http://127.0.0.1:4318\")"
        ));
    }
    if !url.path().ends_with(TRACES_PATH) {
        let path = format!("{}{TRACES_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url.to_string())
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
        assert_eq!(config.check(), Ok(()));
        config.headers.insert("bad name".into(), "x".into());
        assert!(config.check().unwrap_err().contains("bad name"));
        config.headers.clear();
        config.max_queue_spans = 0;
        assert!(config.check().unwrap_err().contains("max_queue_spans"));
    }
}
