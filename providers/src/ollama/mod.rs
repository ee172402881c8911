//! A local or remote Ollama server as a model backend.
//!
//! The server is found from the constructor's argument (config), else
//! `OLLAMA_HOST`, else `http://127.0.0.1:11434` — see [`host`] for the forms
//! accepted. Calls go through ollama-rs where it reads Ollama's answers
//! fully (pull, delete) and through reqwest directly where it does not:
//!
//! * `/api/chat` — ollama-rs 0.3.6 loses stream chunks that split a UTF-8
//!   character and swallows error lines ([`ndjson`] reassembles lines);
//! * `/api/tags`, `/api/show` — ollama-rs drops the `details` object that
//!   holds family and quantization; `/api/version` — not in ollama-rs.
//!
//! Both share one HTTP client with a short connect timeout, so a server that
//! is down or a host that swallows packets fails in seconds with
//! [`ProviderError::Unavailable`]. Short calls have an overall limit too;
//! streams do not, since a model load or a long answer can take minutes.

mod api;
mod chat;
mod errors;
pub mod host;
mod ndjson;
mod pull;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use ollama_rs::Ollama;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::{
    CompletionRequest, ModelInfo, Provider, ProviderError, ProviderStatus, PullStream, TokenStream,
};

/// The backend name in model specifiers (`name@ollama`).
pub const BACKEND: &str = "ollama";

/// How long to wait for a TCP connection. Ollama is usually on this machine
/// or the local network, where 2 s is ample; a dead host must not hang a cell.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Limit for calls that return one JSON answer (tags, show, version, delete).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The Ollama backend.
pub struct OllamaProvider {
    /// The backend's name in specifiers: `ollama`, or a named backend's.
    name: String,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:11434`.
    host: String,
    http: reqwest::Client,
    /// ollama-rs over the same `http` client.
    client: Ollama,
}

impl OllamaProvider {
    /// A backend for the Ollama server at `host` (config), else at
    /// `OLLAMA_HOST`, else at the default address. Does not contact the
    /// server: a server that is down shows in [`Provider::status`].
    pub fn new(host: Option<&str>) -> Result<Self, ProviderError> {
        let env = std::env::var("OLLAMA_HOST").ok();
        let host = host::resolve(host, env.as_deref())?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if host::is_loopback(&host) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| ProviderError::Other(format!("cannot create an HTTP client: {e}")))?;
        // ollama-rs appends `api/…` to the URL as written, so it must end in `/`.
        let url = reqwest::Url::parse(&format!("{host}/"))
            .map_err(|e| ProviderError::Other(format!("`{host}` is not a usable URL: {e}")))?;
        let client = Ollama::builder()
            .url(url)
            .reqwest_client(http.clone())
            .build();
        Ok(OllamaProvider {
            name: BACKEND.into(),
            host,
            http,
            client,
        })
    }

    /// The same backend under another name (`[models.backends.NAME]`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The server's base URL, e.g. `http://127.0.0.1:11434`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's version, from `/api/version`.
    pub async fn version(&self) -> Result<String, ProviderError> {
        let request = self.http.get(self.url("version"));
        let version: api::Version = self.call("/api/version", request, None).await?;
        Ok(version.version)
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/{endpoint}", self.host)
    }

    /// Sends a request that answers with one JSON value, within
    /// [`CALL_TIMEOUT`]. `model` makes a 404 a [`ProviderError::ModelNotFound`].
    async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
        model: Option<&str>,
    ) -> Result<T, ProviderError> {
        let host = &self.host;
        self.bounded(what, async move {
            let response = request
                .send()
                .await
                .map_err(|e| errors::transport(host, &e))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| errors::transport(host, &e))?;
            if !status.is_success() {
                return Err(errors::refused(host, model, Some(status), &body));
            }
            serde_json::from_slice(&body).map_err(|e| {
                ProviderError::Other(format!(
                    "Ollama at {host} answered {what} with something unexpected ({e}); is it really Ollama?"
                ))
            })
        })
        .await
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| ProviderError::Unavailable {
                backend: BACKEND.into(),
                reason: format!(
                    "Ollama at {} did not answer {what} within {} s; check that it is not overloaded",
                    self.host,
                    CALL_TIMEOUT.as_secs()
                ),
            })?
    }
}

/// Whether a `/api/tags` name is what the user asked for; Ollama's
/// `llama3.2` means `llama3.2:latest`.
fn same_model(listed: &str, asked: &str) -> bool {
    listed == asked || listed.strip_suffix(":latest") == Some(asked)
}

#[async_trait]
impl Provider for OllamaProvider {
    fn backend(&self) -> &str {
        &self.name
    }

    async fn list(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let request = self.http.get(self.url("tags"));
        let tags: api::Tags = self.call("/api/tags", request, None).await?;
        Ok(tags
            .models
            .into_iter()
            .map(|m| ModelInfo {
                name: m.name,
                backend: self.name.clone(),
                size_bytes: m.size,
                family: m.details.family,
                quantization: m.details.quantization_level,
                context_length: None,
            })
            .collect())
    }

    async fn info(&self, model: &str) -> Result<ModelInfo, ProviderError> {
        let request = self
            .http
            .post(self.url("show"))
            .json(&api::ShowRequest { model });
        let show: api::Show = self.call("/api/show", request, Some(model)).await?;
        // `/api/show` has no size; the listing does. Best effort.
        let size_bytes = match self.list().await {
            Ok(models) => models
                .into_iter()
                .find(|m| same_model(&m.name, model))
                .and_then(|m| m.size_bytes),
            Err(_) => None,
        };
        Ok(ModelInfo {
            name: model.to_owned(),
            backend: self.name.clone(),
            size_bytes,
            context_length: show.context_length(),
            family: show
                .details
                .family
                .clone()
                .or_else(|| show.architecture().map(str::to_owned)),
            quantization: show.details.quantization_level,
        })
    }

    async fn pull(&self, model: &str) -> Result<PullStream, ProviderError> {
        // The stream itself has no time limit: models are gigabytes.
        self.bounded("/api/pull", pull::pull(&self.client, &self.host, model))
            .await
    }

    async fn remove(&self, model: &str) -> Result<(), ProviderError> {
        self.bounded("/api/delete", async {
            self.client
                .delete_model(model.to_owned())
                .await
                .map_err(|e| errors::client(&self.host, Some(model), e))
        })
        .await
    }

    async fn status(&self) -> ProviderStatus {
        match self.version().await {
            Ok(version) => ProviderStatus {
                backend: self.name.clone(),
                available: true,
                detail: format!("Ollama {version} at {}", self.host),
                version: Some(version),
            },
            Err(e) => ProviderStatus {
                backend: self.name.clone(),
                available: false,
                version: None,
                detail: e.to_string(),
            },
        }
    }

    async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError> {
        chat::stream(&self.http, &self.host, request, cancel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_the_default_tag() {
        assert!(same_model("llama3.2:latest", "llama3.2"));
        assert!(same_model("llama3.2:1b", "llama3.2:1b"));
        assert!(!same_model("llama3.2:1b", "llama3.2"));
    }

    #[test]
    fn an_explicit_host_is_used_as_given() {
        let p = OllamaProvider::new(Some("gpu-box:1234"));
        assert_eq!(
            p.map(|p| p.host.clone()).ok().as_deref(),
            Some("http://gpu-box:1234")
        );
    }
}
