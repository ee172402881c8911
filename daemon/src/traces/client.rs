//! The HTTP client the OTLP exporter posts through: the workspace's
//! reqwest (rustls, so `https` collectors work), with a hard deadline on
//! the whole exchange so a collector that accepts and then stalls costs
//! one timeout, not a stuck export thread.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use skillkernel_stdx::lock;

/// A collector's answer is a small status message; more is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The cause of the latest failed exchange. The exporter reports a failed
/// send as a bare "network error"; the export thread takes the cause from
/// here to say what went wrong.
pub(super) type LastError = Arc<Mutex<Option<String>>>;

#[derive(Debug)]
pub(super) struct CollectorClient {
    client: reqwest::Client,
    timeout: Duration,
    last_error: LastError,
}

impl CollectorClient {
    pub(super) fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            // Each export is one request; a pooled idle connection to a
            // collector that restarted would only fail the next export.
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(Self {
            client,
            timeout,
            last_error: LastError::default(),
        })
    }

    pub(super) fn last_error(&self) -> LastError {
        self.last_error.clone()
    }
}

/// An error and its sources on one line ("connection refused" is a source).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[async_trait::async_trait]
impl HttpClient for CollectorClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let exchange = async {
            let mut response = self.client.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if room <= chunk.len() {
                    break;
                }
            }
            Ok::<_, HttpError>(answer.body(Bytes::from(body))?)
        };
        let answer = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {:.1} s", self.timeout.as_secs_f64()).into()),
        };
        if let Err(e) = &answer {
            *lock(&self.last_error) = Some(chain(e.as_ref()));
        }
        answer
    }
}
