//! The registry over scripted backends: routing of specifiers, profiles
//! falling back past backends that are down, the response cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, GenerationStats, ModelInfo, ModelsConfig,
    Provider, ProviderError, ProviderStatus, PullStream, Registry, ResponseCache, StreamEvent,
    TokenStream,
};
use tokio_util::sync::CancellationToken;

/// A backend with fixed models that answers with the model's name.
struct Scripted {
    name: &'static str,
    models: Vec<&'static str>,
    up: bool,
    generations: AtomicUsize,
}

impl Scripted {
    fn new(name: &'static str, models: &[&'static str], up: bool) -> Arc<Self> {
        Arc::new(Scripted {
            name,
            models: models.to_vec(),
            up,
            generations: AtomicUsize::new(0),
        })
    }

    fn check(&self, model: &str) -> Result<(), ProviderError> {
        if !self.up {
            return Err(ProviderError::Unavailable {
                backend: self.name.into(),
                reason: "down".into(),
            });
        }
        if !self.models.contains(&model) {
            return Err(ProviderError::ModelNotFound {
                model: model.into(),
                hint: format!("{} has no {model}", self.name),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for Scripted {
    fn backend(&self) -> &str {
        self.name
    }
    async fn list(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        if !self.up {
            return Err(ProviderError::Unavailable {
                backend: self.name.into(),
                reason: "down".into(),
            });
        }
        Ok(self
            .models
            .iter()
            .map(|m| ModelInfo {
                name: m.to_string(),
                backend: self.name.into(),
                size_bytes: None,
                family: None,
                quantization: None,
                context_length: None,
            })
            .collect())
    }
    async fn info(&self, model: &str) -> Result<ModelInfo, ProviderError> {
        self.check(model)?;
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|m| m.name == model)
            .unwrap())
    }
    async fn pull(&self, model: &str) -> Result<PullStream, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "{} cannot pull {model}",
            self.name
        )))
    }
    async fn remove(&self, model: &str) -> Result<(), ProviderError> {
        self.check(model)
    }
    async fn status(&self) -> ProviderStatus {
        ProviderStatus {
            backend: self.name.into(),
            available: self.up,
            version: None,
            detail: String::new(),
        }
    }
    async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError> {
        self.check(&request.model)?;
        self.generations.fetch_add(1, Ordering::SeqCst);
        let stats = GenerationStats {
            prompt_tokens: 1,
            completion_tokens: 2,
            prompt_ms: 1.0,
            first_token_ms: Some(1.0),
            total_ms: 2.0,
            finish_reason: if cancel.is_cancelled() {
                "cancelled"
            } else {
                "stop"
            }
            .into(),
            cached: false,
        };
        let events = vec![
            Ok(StreamEvent::Text(format!("{} says ", self.name))),
            Ok(StreamEvent::Text(request.model.clone())),
            Ok(StreamEvent::Done(stats)),
        ];
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

fn config(toml_text: &str) -> ModelsConfig {
    toml::from_str(toml_text).unwrap()
}

fn request(model: &str, temperature: f32) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }],
        options: GenerationOptions {
            temperature,
            ..GenerationOptions::default()
        },
    }
}

#[tokio::test]
async fn specifiers_route_local_first_unless_a_backend_is_named() {
    let local = Scripted::new("candle", &["smol", "shared"], true);
    let remote = Scripted::new("ollama", &["llama3", "shared"], true);
    let r = Registry::new(vec![local, remote], config("default = \"smol\""));
    assert_eq!(r.route("shared").await.unwrap().spec(), "shared@candle");
    assert_eq!(
        r.route("shared@ollama").await.unwrap().spec(),
        "shared@ollama"
    );
    assert_eq!(r.route("local/smol").await.unwrap().spec(), "smol@candle");
    assert_eq!(r.route("llama3").await.unwrap().spec(), "llama3@ollama");

    let missing = r.route("nothing").await.unwrap_err().to_string();
    assert!(
        missing.contains("candle has no nothing") && missing.contains("ollama has no nothing"),
        "{missing}"
    );
    let unknown = r.route("smol@vllm").await.unwrap_err().to_string();
    assert!(
        unknown.contains("no backend `vllm`") && unknown.contains("candle, ollama"),
        "{unknown}"
    );
}

#[tokio::test]
async fn profiles_skip_unavailable_backends_and_end_on_the_local_default() {
    let local = Scripted::new("candle", &["smol"], true);
    let remote = Scripted::new("ollama", &["big"], false);
    let r = Registry::new(
        vec![local, remote],
        config("default = \"smol\"\n[profiles]\npremium = [\"big@ollama\"]"),
    );
    let route = r.route("premium").await.unwrap();
    assert_eq!(route.spec(), "smol@candle");
    assert_eq!(route.profile.as_deref(), Some("premium"));
    assert_eq!(
        r.route("profile:cheap").await.unwrap().spec(),
        "smol@candle"
    );

    let (route, done) = r
        .complete(request("premium", 0.7), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(route.spec(), "smol@candle");
    assert_eq!(done.text, "candle says smol");

    // With the local default gone too, the error names every step.
    let nothing = Registry::new(
        vec![
            Scripted::new("candle", &[], true),
            Scripted::new("ollama", &["big"], false),
        ],
        config("default = \"smol\"\n[profiles]\npremium = [\"big@ollama\"]"),
    );
    let e = nothing.route("premium").await.unwrap_err().to_string();
    assert!(
        e.contains("profile `premium`") && e.contains("big@ollama") && e.contains("smol"),
        "{e}"
    );
}

#[tokio::test]
async fn a_listing_reports_backends_that_are_down_instead_of_failing() {
    let r = Registry::new(
        vec![
            Scripted::new("candle", &["smol"], true),
            Scripted::new("ollama", &["big"], false),
        ],
        ModelsConfig::default(),
    );
    let listing = r.list().await;
    assert_eq!(listing.models.len(), 1);
    assert_eq!(listing.unavailable.len(), 1);
    assert_eq!(listing.unavailable[0].0, "ollama");
    let statuses = r.statuses().await;
    assert_eq!(
        statuses.iter().map(|s| s.available).collect::<Vec<_>>(),
        [true, false]
    );
}

#[tokio::test]
async fn deterministic_answers_come_from_the_cache_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let local = Scripted::new("candle", &["smol"], true);
    let cache = ResponseCache::open(dir.path(), Duration::from_secs(3600)).unwrap();
    let r = Registry::new(vec![local.clone()], ModelsConfig::default()).with_cache(cache);

    let (_, first) = r
        .complete(request("smol", 0.0), CancellationToken::new())
        .await
        .unwrap();
    let (_, second) = r
        .complete(request("smol", 0.0), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(first.text, second.text);
    assert!(!first.stats.cached && second.stats.cached);
    assert_eq!(second.stats.completion_tokens, 2);
    assert_eq!(local.generations.load(Ordering::SeqCst), 1);

    // Sampled requests always run the model.
    r.complete(request("smol", 0.8), CancellationToken::new())
        .await
        .unwrap();
    r.complete(request("smol", 0.8), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(local.generations.load(Ordering::SeqCst), 3);

    // A cancelled generation is not kept.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let mut other = request("smol", 0.0);
    other.messages[0].content = "something else".into();
    r.complete(other.clone(), cancel).await.unwrap();
    r.complete(other, CancellationToken::new()).await.unwrap();
    assert_eq!(local.generations.load(Ordering::SeqCst), 5);
}
