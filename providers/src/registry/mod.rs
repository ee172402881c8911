//! The provider registry: every configured backend behind one front, model
//! specifiers routed to the right one, routing profiles with a fallback
//! chain, and the response cache in front of generation.
//!
//! Routing rules, in order:
//! * `name@backend` goes to that backend and nowhere else;
//! * a profile (`cheap`, `balanced`, `premium`, or one from the config,
//!   optionally written `profile:NAME`) tries its chain in order and takes
//!   the first model whose backend is up and has it;
//! * a bare name goes to the first backend, in the configured order (local
//!   first), that has a model by that name.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cache::ResponseCache;
use crate::config::ModelsConfig;
use crate::spec::ModelSpec;
use crate::usage::record::{recorded, Draft};
use crate::usage::{budget, BudgetState, Caller, Ledger};

mod budgets;
pub mod calls;
mod setup;

use crate::{
    Completion, CompletionRequest, ModelInfo, Provider, ProviderError, ProviderStatus, PullStream,
    StreamEvent, TokenStream,
};
pub use calls::{CallOutcome, ModelCallFigures, ModelCalls};
pub use setup::SetupNotes;

/// Where a specifier led.
#[derive(Clone)]
pub struct Route {
    pub provider: Arc<dyn Provider>,
    /// The model's name in its backend.
    pub model: String,
    /// The profile that chose it, if one did.
    pub profile: Option<String>,
    /// Why it is not what was asked for (a budget handed the call to the
    /// default model), for the caller to show.
    pub notice: Option<String>,
}

impl Route {
    /// `name@backend`, the unambiguous way to name what was chosen.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.model, self.provider.backend())
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("model", &self.spec())
            .field("profile", &self.profile)
            .finish()
    }
}

/// Models from every backend, and the backends that could not be asked.
#[derive(Debug, Default)]
pub struct Listing {
    pub models: Vec<ModelInfo>,
    pub unavailable: Vec<(String, ProviderError)>,
}

/// All configured backends behind one front.
pub struct Registry {
    backends: Vec<Arc<dyn Provider>>,
    config: ModelsConfig,
    cache: Option<ResponseCache>,
    usage: Option<Arc<Ledger>>,
    /// Kept across reloads (see [`Registry::with_calls`]).
    calls: Arc<ModelCalls>,
}

impl Registry {
    /// A registry over `backends`, tried in the given order.
    pub fn new(backends: Vec<Arc<dyn Provider>>, config: ModelsConfig) -> Self {
        Registry {
            backends,
            config,
            cache: None,
            usage: None,
            calls: Arc::default(),
        }
    }

    /// Records every generation in `ledger`, which budgets are checked
    /// against.
    pub fn with_usage(mut self, ledger: Arc<Ledger>) -> Self {
        self.usage = Some(ledger);
        self
    }

    /// Counts calls into `calls` (a reloaded registry keeps the old
    /// one's counters).
    pub fn with_calls(mut self, calls: Arc<ModelCalls>) -> Self {
        self.calls = calls;
        self
    }

    /// Model calls per backend and model, for the metrics endpoint.
    pub fn calls(&self) -> &Arc<ModelCalls> {
        &self.calls
    }

    pub fn usage(&self) -> Option<&Arc<Ledger>> {
        self.usage.as_ref()
    }

    /// Serves deterministic requests from `cache` when it has them.
    pub fn with_cache(mut self, cache: ResponseCache) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn backends(&self) -> &[Arc<dyn Provider>] {
        &self.backends
    }

    pub fn config(&self) -> &ModelsConfig {
        &self.config
    }

    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_ref()
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Result<&Arc<dyn Provider>, ProviderError> {
        self.backends
            .iter()
            .find(|p| p.backend() == name)
            .ok_or_else(|| {
                ProviderError::Unsupported(format!(
                    "no backend `{name}` is configured; configured: {}",
                    self.backend_names().join(", ")
                ))
            })
    }

    fn backend_names(&self) -> Vec<&str> {
        self.backends.iter().map(|p| p.backend()).collect()
    }

    /// Where `spec` leads now.
    pub async fn route(&self, spec: &str) -> Result<Route, ProviderError> {
        let trimmed = spec.trim();
        let profile = trimmed.strip_prefix("profile:").unwrap_or(trimmed);
        if let Some(chain) = self.config.profile_chain(profile) {
            return self.route_profile(profile, &chain).await;
        }
        self.route_model(trimmed).await
    }

    async fn route_profile(&self, profile: &str, chain: &[String]) -> Result<Route, ProviderError> {
        let mut skipped = Vec::new();
        for candidate in chain {
            match self.route_model(candidate).await {
                Ok(mut route) => {
                    if !skipped.is_empty() {
                        tracing::info!(profile, chosen = %route.spec(), skipped = %skipped.join("; "), "profile fell back");
                    }
                    route.profile = Some(profile.to_owned());
                    return Ok(route);
                }
                Err(e) => skipped.push(format!("{candidate}: {e}")),
            }
        }
        Err(exhausted(profile, &skipped))
    }

    async fn route_model(&self, spec: &str) -> Result<Route, ProviderError> {
        let parsed = ModelSpec::parse(spec).ok_or_else(|| ProviderError::ModelNotFound {
            model: spec.to_owned(),
            hint: "give a model name, `name@backend` or a profile (cheap, balanced, premium)"
                .into(),
        })?;
        if let Some(backend) = &parsed.backend {
            let provider = self.backend(backend)?;
            let model = provider.has_model(&parsed.name).await?;
            return Ok(Route {
                provider: Arc::clone(provider),
                model,
                profile: None,
                notice: None,
            });
        }
        let mut errors = Vec::new();
        for provider in &self.backends {
            match provider.has_model(&parsed.name).await {
                Ok(model) => {
                    return Ok(Route {
                        provider: Arc::clone(provider),
                        model,
                        profile: None,
                        notice: None,
                    })
                }
                Err(e) => errors.push((provider.backend().to_owned(), e)),
            }
        }
        Err(not_found(&parsed.name, errors))
    }

    /// Describes the model `spec` leads to.
    pub async fn info(&self, spec: &str) -> Result<ModelInfo, ProviderError> {
        let route = self.route(spec).await?;
        route.provider.info(&route.model).await
    }

    /// Models of every backend; a backend that is down is reported, not fatal.
    pub async fn list(&self) -> Listing {
        let mut listing = Listing::default();
        for provider in &self.backends {
            match provider.list().await {
                Ok(models) => listing.models.extend(models),
                Err(e) => listing.unavailable.push((provider.backend().to_owned(), e)),
            }
        }
        listing
    }

    /// Status of every backend, in routing order.
    pub async fn statuses(&self) -> Vec<ProviderStatus> {
        let mut out = Vec::with_capacity(self.backends.len());
        for provider in &self.backends {
            out.push(provider.status().await);
        }
        out
    }

    /// Tells every backend the conversation ended, so the embedded
    /// engine drops its KV caches now rather than when they go idle.
    pub async fn forget_context(&self) {
        for provider in &self.backends {
            provider.forget_context().await;
        }
    }

    /// The backend a pull of `spec` goes to, and the name to pull.
    ///
    /// `@backend` decides when given. Otherwise hub paths
    /// (`ORG/REPO/FILE.gguf`) and names from the embedded backend's catalog
    /// go to `candle`, and anything else to the first backend that is not
    /// `candle` (Ollama's registry names), falling back to the first.
    pub fn pull_target(&self, spec: &str) -> Result<(Arc<dyn Provider>, String), ProviderError> {
        let parsed = ModelSpec::parse(spec).ok_or_else(|| ProviderError::ModelNotFound {
            model: spec.to_owned(),
            hint: "give what to pull: ORG/REPO/FILE.gguf, a catalog name, or name@ollama".into(),
        })?;
        if let Some(backend) = &parsed.backend {
            return Ok((Arc::clone(self.backend(backend)?), parsed.name));
        }
        let hub_path =
            parsed.name.matches('/').count() >= 2 && parsed.name.to_lowercase().ends_with(".gguf");
        let wants_candle = hub_path
            || self
                .config
                .candle
                .catalog
                .contains_key(&parsed.name.to_lowercase());
        let provider = self
            .backends
            .iter()
            .find(|p| (p.backend() == crate::candle::BACKEND) == wants_candle)
            .or_else(|| self.backends.first())
            .ok_or_else(|| ProviderError::Unsupported("no model backend is configured".into()))?;
        Ok((Arc::clone(provider), parsed.name))
    }

    /// Downloads `spec` into its backend, streaming progress.
    pub async fn pull(&self, spec: &str) -> Result<(String, PullStream), ProviderError> {
        let (provider, name) = self.pull_target(spec)?;
        let stream = provider.pull(&name).await?;
        Ok((provider.backend().to_owned(), stream))
    }

    /// Deletes the model `spec` names (never through a profile).
    pub async fn remove(&self, spec: &str) -> Result<String, ProviderError> {
        if self.config.is_profile(spec) {
            return Err(ProviderError::Unsupported(format!(
                "`{spec}` is a routing profile, not a model; name the model to remove"
            )));
        }
        let route = self.route_model(spec).await?;
        route.provider.remove(&route.model).await?;
        Ok(route.spec())
    }

    /// Adds a local model file to the first backend that can import.
    pub async fn import(
        &self,
        source: &std::path::Path,
        name: Option<&str>,
    ) -> Result<ModelInfo, ProviderError> {
        let mut last = None;
        for provider in &self.backends {
            match provider.import(source, name).await {
                Err(ProviderError::Unsupported(why)) => last = Some(why),
                other => return other,
            }
        }
        Err(ProviderError::Unsupported(last.unwrap_or_else(|| {
            "no configured backend can import model files".into()
        })))
    }

    /// Generates for `request` (its `model` is a specifier), from the cache
    /// when the request is deterministic and the answer is there.
    ///
    /// Through a profile, a model whose backend fails before its first
    /// token (down, out of hosts, rate limited past its budget) gives way
    /// to the next in the chain, as one that is not there does.
    pub async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<(Route, TokenStream), ProviderError> {
        self.stream_for(&Caller::default(), request, cancel).await
    }

    /// [`Registry::stream`] on behalf of `caller`: the call is recorded
    /// under its session and skill, and held to its budgets.
    ///
    /// Through a profile, a model over budget gives way to the next in the
    /// chain, as one that is down does.
    pub async fn stream_for(
        &self,
        caller: &Caller,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<(Route, TokenStream), ProviderError> {
        let spec = request.model.trim().to_owned();
        let profile = spec.strip_prefix("profile:").unwrap_or(&spec);
        let Some(chain) = self.config.profile_chain(profile) else {
            let route = self.route_model(&spec).await?;
            let route = self.within_budget(caller, route).await?;
            return self.stream_on(caller, route, request, cancel).await;
        };
        let mut skipped = Vec::new();
        // The first budget that turned a model of the chain away, and
        // the model.
        let mut over_budget: Option<(BudgetState, String)> = None;
        let mut all_over_budget = true;
        for candidate in &chain {
            let mut route = match self.route_model(candidate).await {
                Ok(route) => route,
                Err(e) => {
                    skipped.push(format!("{candidate}: {e}"));
                    all_over_budget = false;
                    continue;
                }
            };
            route.profile = Some(profile.to_owned());
            // Through a profile, a model over budget gives way to the
            // chain's next, which ends on the default model.
            if let Some(over) = self.used_up_budget(caller, &route).await {
                skipped.push(format!(
                    "{}: {} is used up",
                    route.spec(),
                    budget::describe(&over)
                ));
                over_budget.get_or_insert((over, route.spec()));
                continue;
            }
            match self
                .stream_on(caller, route.clone(), request.clone(), cancel.clone())
                .await
            {
                Ok((mut chosen, stream)) => {
                    if !skipped.is_empty() {
                        tracing::info!(profile, chosen = %chosen.spec(), skipped = %skipped.join("; "), "profile fell back");
                    }
                    if let Some((over, asked)) = &over_budget {
                        chosen.notice = Some(format!(
                            "{} is used up: {} answered instead of {asked}",
                            budget::describe(over),
                            chosen.spec()
                        ));
                    }
                    return Ok((chosen, stream));
                }
                Err(e @ ProviderError::Unavailable { .. }) => {
                    tracing::warn!(profile, model = %route.spec(), error = %e, "falling back to the next model of the profile");
                    skipped.push(format!("{}: {e}", route.spec()));
                    all_over_budget = false;
                }
                Err(e) => return Err(e),
            }
        }
        match over_budget {
            // Every model it has is priced and over budget: say so, rather
            // than that they are down (which skills would retry).
            Some((over, asked)) if all_over_budget => Err(ProviderError::BudgetExceeded(
                budget::refusal(&over, &asked),
            )),
            _ => Err(exhausted(profile, &skipped)),
        }
    }

    /// Generates on the model `route` chose, within `caller`'s budgets; an
    /// answer that falls into a loop is stopped (when `stop_loops` is on);
    /// the call is recorded in the usage ledger.
    async fn stream_on(
        &self,
        caller: &Caller,
        route: Route,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<(Route, TokenStream), ProviderError> {
        let prompt_estimate = crate::usage::record::prompt_estimate(&request);
        let started = Instant::now();
        let (backend, model) = (route.provider.backend().to_owned(), route.model.clone());
        let span = calls::call_span(&backend, &model, route.profile.as_deref());
        let generated = if self.config.generation.stop_loops {
            // Its own token, so the guard can stop this generation alone;
            // a cancel of the run still reaches it.
            let generation = cancel.child_token();
            self.generate_on(route, request, generation.clone())
                .instrument(span.clone())
                .await
                .map(|(route, stream)| (route, crate::repetition::guard(stream, generation)))
        } else {
            self.generate_on(route, request, cancel)
                .instrument(span.clone())
                .await
        };
        let (route, stream) = generated.inspect_err(|e| {
            self.calls.failed(&backend, &model, e);
            calls::record_failure(&span, e);
        })?;
        let stream = calls::counted(stream, self.calls.counters(&backend, &model), span);
        let Some(ledger) = &self.usage else {
            return Ok((route, stream));
        };
        let backend = route.provider.backend().to_owned();
        let draft = Draft {
            caller: caller.clone(),
            price: self.config.price(&route.model, &backend),
            backend,
            model: route.model.clone(),
            profile: route.profile.clone(),
            prompt_estimate,
            started,
        };
        Ok((route, recorded(stream, Arc::clone(ledger), draft)))
    }

    async fn generate_on(
        &self,
        route: Route,
        mut request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<(Route, TokenStream), ProviderError> {
        request.model = route.model.clone();
        let Some(cache) = self
            .cache
            .as_ref()
            .filter(|_| ResponseCache::is_deterministic(&request))
        else {
            let stream = route.provider.stream(request, cancel).await?;
            return Ok((route, stream));
        };
        let started = Instant::now();
        let key = ResponseCache::key(route.provider.backend(), &request);
        if let Some(hit) = cache.get(&key) {
            let mut stats = hit.stats;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            stats.cached = true;
            stats.prompt_ms = ms;
            stats.first_token_ms = Some(ms);
            stats.total_ms = ms;
            let mut events = vec![Ok(StreamEvent::Text(hit.text))];
            events.extend(
                hit.tool_calls
                    .into_iter()
                    .map(|c| Ok(StreamEvent::ToolCall(c))),
            );
            events.push(Ok(StreamEvent::Done(stats)));
            return Ok((route, Box::pin(futures::stream::iter(events))));
        }
        let inner = route.provider.stream(request, cancel).await?;
        Ok((route, remember(inner, cache.clone(), key)))
    }

    /// Generates to the end for `request`.
    pub async fn complete(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<(Route, Completion), ProviderError> {
        let (route, stream) = self.stream(request, cancel).await?;
        Ok((route, crate::collect(stream).await?))
    }
}

/// Passes a stream through, keeping its answer in the cache when it ends
/// normally (not cancelled, not failed).
fn remember(inner: TokenStream, cache: ResponseCache, key: [u8; 32]) -> TokenStream {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    Box::pin(inner.inspect(move |event| match event {
        Ok(StreamEvent::Text(piece)) => text.push_str(piece),
        Ok(StreamEvent::ToolCall(call)) => tool_calls.push(call.clone()),
        Ok(StreamEvent::Done(stats)) if stats.finish_reason != "cancelled" => {
            let completion = Completion {
                text: std::mem::take(&mut text),
                tool_calls: std::mem::take(&mut tool_calls),
                stats: stats.clone(),
            };
            if let Err(e) = cache.put(&key, &completion) {
                tracing::warn!(error = %e, "could not keep the answer in the response cache");
            }
        }
        _ => {}
    }))
}

/// A profile none of whose models could answer.
fn exhausted(profile: &str, skipped: &[String]) -> ProviderError {
    ProviderError::Unavailable {
        backend: format!("profile `{profile}`"),
        reason: if skipped.is_empty() {
            "it lists no models; add some under [models.profiles] in the config".into()
        } else {
            format!(
                "no model in its chain is available ({})",
                skipped.join("; ")
            )
        },
    }
}

/// One error for a name no backend has, keeping each backend's reason.
fn not_found(name: &str, mut errors: Vec<(String, ProviderError)>) -> ProviderError {
    if errors.len() == 1 {
        return errors.remove(0).1;
    }
    if errors.is_empty() {
        return ProviderError::Unsupported("no model backend is configured".into());
    }
    let reasons: Vec<String> = errors
        .iter()
        .map(|(backend, e)| match e {
            ProviderError::ModelNotFound { hint, .. } => format!("{backend}: {hint}"),
            other => format!("{backend}: {other}"),
        })
        .collect();
    ProviderError::ModelNotFound {
        model: name.to_owned(),
        hint: reasons.join("; "),
    }
}
