//! Backends on the far side of HTTP: OpenAI-compatible servers and
//! Anthropic's API, one server or a pool of them.
//!
//! One [`RemoteProvider`] serves both kinds; a [`Dialect`] says how each
//! API spells its requests and events. The provider owns what they share:
//!
//! * the [`pool`] of hosts — least outstanding requests, hosts that list
//!   the model first, a breaker per host with a re-check of `/models`;
//! * failover: a request that fails before its first token (refused
//!   connection, timeout, 5xx, an error event, a stream cut short) is sent
//!   to the next host; after the first token, the answer so far is kept
//!   and the error says what happened;
//! * 429: other hosts first, then `Retry-After` waited out within the
//!   first-byte budget, then [`ProviderError::Unavailable`] so a profile
//!   falls back;
//! * connect and first-byte timeouts, so nothing hangs;
//! * the API key, read from the environment variable the configuration
//!   names and never written anywhere ([`ApiKey`] does not print it).

mod anthropic;
mod dialect;
pub(crate) mod errors;
mod generate;
mod openai;
pub mod pool;
mod reader;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use dialect::{Decoded, Dialect};

use crate::config::{BackendConfig, BackendKind};
use crate::{
    CompletionRequest, ModelInfo, Provider, ProviderError, ProviderStatus, PullStream, TokenStream,
};
use errors::{Asked, Failure, Next};
use pool::Pool;

/// How long a `/models` call may take.
const MODELS_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a request that every host rate-limits is retried.
const RATE_LIMIT_ROUNDS: u32 = 3;

/// An API key read from the environment. Never printed.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// An OpenAI-compatible or Anthropic backend.
pub struct RemoteProvider {
    name: String,
    config: BackendConfig,
    dialect: Arc<dyn Dialect>,
    pool: Pool,
    http: reqwest::Client,
    /// `Err` names the variable that should hold the key but does not.
    key: Result<Option<ApiKey>, String>,
    /// The server refused the standard way of asking for an output schema
    /// and took [`Dialect::schema_fallback`]'s: ask that way from now on.
    schema_fallback: std::sync::atomic::AtomicBool,
}

impl RemoteProvider {
    /// The backend `[models.backends.NAME]` describes. Reads the API key
    /// from the environment now; a missing one is reported by
    /// [`RemoteProvider::missing_key`] and at first use, not here.
    pub fn new(name: &str, config: &BackendConfig) -> Result<Self, ProviderError> {
        let dialect: Arc<dyn Dialect> = match config.kind {
            BackendKind::Openai => Arc::new(openai::OpenAi),
            BackendKind::Anthropic => Arc::new(anthropic::Anthropic),
            other => {
                return Err(ProviderError::Unsupported(format!(
                    "`{other}` is not an HTTP API backend"
                )))
            }
        };
        let key = match &config.api_key_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(value) if !value.trim().is_empty() => Ok(Some(ApiKey(value.trim().to_owned()))),
                _ => Err(var.clone()),
            },
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(config.connect_timeout_secs))
            .tcp_nodelay(true);
        if config.urls.iter().all(|u| is_loopback(u)) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| ProviderError::Other(format!("cannot create an HTTP client: {e}")))?;
        Ok(RemoteProvider {
            name: name.to_owned(),
            config: config.clone(),
            dialect,
            pool: Pool::new(&config.urls, config.max_concurrency),
            http,
            key,
            schema_fallback: Default::default(),
        })
    }

    /// The environment variable that should hold the API key but is unset.
    pub fn missing_key(&self) -> Option<&str> {
        self.key.as_ref().err().map(String::as_str)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn no_key(&self, var: &str) -> ProviderError {
        ProviderError::Unavailable {
            backend: self.name.clone(),
            reason: format!(
                "the API key variable ${var} is not set in the daemon's environment; \
                 export it (systemd: Environment= or EnvironmentFile=) and reload"
            ),
        }
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let key = match &self.key {
            Ok(key) => key.as_ref().map(|k| k.0.as_str()),
            Err(var) => return Err(self.no_key(var)),
        };
        let mut headers = HeaderMap::new();
        let pairs = self
            .config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(self.dialect.auth_headers(&self.config, key));
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ProviderError::Other(format!(
                    "[models.backends.{}]: `{name}` is not a header name",
                    self.name
                ))
            })?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                ProviderError::Other(format!(
                    "[models.backends.{}]: the value of header `{name}` is not valid in HTTP",
                    self.name
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(headers)
    }

    /// Asks one host what it serves, and updates its breaker.
    async fn fetch_models(&self, index: usize) -> Result<Vec<ModelInfo>, Failure> {
        let host = &self.pool.hosts()[index];
        let headers = self.headers().map_err(|error| Failure {
            error,
            next: Next::GiveUp,
        })?;
        let asked = self.asked(&host.url, None);
        let call = async {
            let response = self
                .http
                .get(format!("{}/models", host.url))
                .headers(headers)
                .send()
                .await
                .map_err(|e| errors::transport(&self.name, &host.url, &e))?;
            let status = response.status();
            let retry = errors::retry_after(response.headers());
            let body = response
                .bytes()
                .await
                .map_err(|e| errors::transport(&self.name, &host.url, &e))?;
            if !status.is_success() {
                return Err(errors::status(
                    self.dialect.as_ref(),
                    &asked,
                    status,
                    retry,
                    &body,
                ));
            }
            let value: Value = serde_json::from_slice(&body).map_err(|e| Failure {
                error: ProviderError::Unavailable {
                    backend: self.name.clone(),
                    reason: format!("{}/models did not answer JSON: {e}", host.url),
                },
                next: Next::OtherHost,
            })?;
            Ok(self.dialect.models(&self.name, &value))
        };
        let result = match tokio::time::timeout(MODELS_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(Failure {
                error: ProviderError::Unavailable {
                    backend: self.name.clone(),
                    reason: format!(
                        "{}/models did not answer within {} s",
                        host.url,
                        MODELS_TIMEOUT.as_secs()
                    ),
                },
                next: Next::OtherHost,
            }),
        };
        match &result {
            Ok(models) => {
                host.succeeded();
                host.set_models(models.iter().map(|m| m.name.clone()).collect());
            }
            Err(f) if matches!(f.next, Next::OtherHost) => host.failed(&f.error.to_string()),
            Err(_) => {}
        }
        result
    }

    fn asked<'a>(&'a self, host: &'a str, model: Option<&'a str>) -> Asked<'a> {
        Asked {
            backend: &self.name,
            host,
            model,
            api_key_env: self.config.api_key_env.as_deref(),
            known_models: &[],
        }
    }

    /// Every model known from the configuration and the hosts' last answers.
    fn known_models(&self) -> Vec<String> {
        let mut names = self.config.models.clone();
        for host in self.pool.hosts() {
            for name in host.models().unwrap_or_default() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    fn static_info(&self, name: &str) -> ModelInfo {
        ModelInfo {
            name: name.to_owned(),
            backend: self.name.clone(),
            size_bytes: None,
            family: None,
            quantization: None,
            context_length: None,
        }
    }
}

fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| h == "localhost" || h == "[::1]" || h.starts_with("127."))
}

#[async_trait]
impl Provider for RemoteProvider {
    fn backend(&self) -> &str {
        &self.name
    }

    /// Unreachable when the last request to every host of the pool
    /// failed (a success clears a host's error), with each host's error.
    fn unreachable(&self) -> Option<String> {
        let hosts = self.pool.hosts();
        let errors: Vec<String> = hosts
            .iter()
            .map_while(|h| h.last_error().map(|e| format!("{}: {e}", h.url)))
            .collect();
        (!hosts.is_empty() && errors.len() == hosts.len()).then(|| errors.join(", "))
    }

    async fn list(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        if let Err(var) = &self.key {
            return Err(self.no_key(var));
        }
        let mut models: Vec<ModelInfo> = self
            .config
            .models
            .iter()
            .map(|m| self.static_info(m))
            .collect();
        if !self.config.discover {
            return Ok(models);
        }
        let mut reasons = Vec::new();
        let mut answered = false;
        for index in 0..self.pool.hosts().len() {
            match self.fetch_models(index).await {
                Ok(listed) => {
                    answered = true;
                    for info in listed {
                        match models.iter_mut().find(|m| m.name == info.name) {
                            Some(known) => *known = info,
                            None => models.push(info),
                        }
                    }
                }
                Err(f) => reasons.push(f.error.to_string()),
            }
        }
        if !answered {
            return Err(ProviderError::Unavailable {
                backend: self.name.clone(),
                reason: reasons.join("; "),
            });
        }
        Ok(models)
    }

    async fn info(&self, model: &str) -> Result<ModelInfo, ProviderError> {
        let models = self.list().await?;
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        models
            .iter()
            .find(|m| m.name == model)
            .cloned()
            .ok_or_else(|| ProviderError::ModelNotFound {
                model: model.to_owned(),
                hint: format!("{} serves: {}", self.name, names.join(", ")),
            })
    }

    async fn has_model(&self, model: &str) -> Result<String, ProviderError> {
        if let Err(var) = &self.key {
            return Err(self.no_key(var));
        }
        // What is known already answers without a call: routing happens
        // before every prompt.
        if self.known_models().iter().any(|m| m == model) || !self.config.discover {
            return if self.known_models().iter().any(|m| m == model) {
                Ok(model.to_owned())
            } else {
                Err(ProviderError::ModelNotFound {
                    model: model.to_owned(),
                    hint: format!("{} serves: {}", self.name, self.config.models.join(", ")),
                })
            };
        }
        self.info(model).await.map(|m| m.name)
    }

    async fn pull(&self, _model: &str) -> Result<PullStream, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "pull is not supported by this backend: `{}` is an {}, whose models are managed on the server",
            self.name,
            self.dialect.describe()
        )))
    }

    async fn remove(&self, _model: &str) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "rm is not supported by this backend: `{}` is an {}, whose models are managed on the server",
            self.name,
            self.dialect.describe()
        )))
    }

    async fn status(&self) -> ProviderStatus {
        let mut up = Vec::new();
        let mut down = Vec::new();
        if let Err(var) = &self.key {
            down.push(self.no_key(var).to_string());
        } else {
            for index in 0..self.pool.hosts().len() {
                let url = self.pool.hosts()[index].url.clone();
                match self.fetch_models(index).await {
                    Ok(models) => up.push(format!("{url} ({} models)", models.len())),
                    Err(f) => down.push(format!("{url}: {}", f.error)),
                }
            }
        }
        let mut detail = format!("{} of {} host(s) up", up.len(), self.pool.hosts().len());
        if !up.is_empty() {
            detail.push_str(&format!(": {}", up.join(", ")));
        }
        if !down.is_empty() {
            detail.push_str(&format!("; down: {}", down.join("; ")));
        }
        ProviderStatus {
            backend: self.name.clone(),
            available: !up.is_empty(),
            version: Some(self.dialect.describe().to_owned()),
            detail,
        }
    }

    async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError> {
        self.generate(request, cancel).await
    }
}
