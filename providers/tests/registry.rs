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
            ..Default::default()
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
        messages: vec![ChatMessage::new("user", "hi")],
        options: GenerationOptions {
            temperature,
            ..GenerationOptions::default()
        },
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
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

/// Price: 1 per token in and out, so one scripted call (1 in, 2 out) costs
/// 3 millionths; a daily budget of 0.000001 is used up by one call.
const PRICED: &str = "[prices]\n\"big@ollama\" = { input = 1.0, output = 1.0 }\n\
                      \"huge@ollama\" = { input = 1.0, output = 1.0 }\n";

fn ledger(dir: &std::path::Path) -> Arc<skillkernel_providers::usage::Ledger> {
    Arc::new(skillkernel_providers::usage::Ledger::open(dir).unwrap())
}

#[tokio::test]
async fn through_a_profile_a_model_over_budget_gives_way_and_the_answer_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let local = Scripted::new("candle", &["smol"], true);
    let remote = Scripted::new("ollama", &["big"], true);
    let r = Registry::new(
        vec![local.clone(), remote.clone()],
        config(&format!(
            "default = \"smol\"\n[profiles]\npremium = [\"big@ollama\"]\n\
             [budgets]\ndaily = 0.000001\non_exceeded = \"refuse\"\n{PRICED}"
        )),
    )
    .with_usage(ledger(dir.path()));
    let caller = skillkernel_providers::usage::Caller::session("s");
    let ask = |model: &str| (caller.clone(), request(model, 0.7));

    // Within budget: the priced model answers (the control).
    let (c, q) = ask("premium");
    let (route, stream) = r.stream_for(&c, q, CancellationToken::new()).await.unwrap();
    skillkernel_providers::collect(stream).await.unwrap();
    assert_eq!(route.spec(), "big@ollama");
    assert!(route.notice.is_none());

    // Used up: the chain's next model, the local default, answers, saying why.
    let (c, q) = ask("premium");
    let (route, stream) = r.stream_for(&c, q, CancellationToken::new()).await.unwrap();
    skillkernel_providers::collect(stream).await.unwrap();
    assert_eq!(route.spec(), "smol@candle");
    let notice = route.notice.unwrap_or_default();
    assert!(
        notice.contains("daily budget") && notice.contains("instead of big@ollama"),
        "{notice}"
    );
    assert_eq!(remote.generations.load(Ordering::SeqCst), 1);

    // Named directly with on_exceeded = "refuse": refused, naming the budget.
    let (c, q) = ask("big@ollama");
    let refused = match r.stream_for(&c, q, CancellationToken::new()).await {
        Err(e) => e,
        Ok((route, _)) => panic!("answered by {}", route.spec()),
    };
    assert!(
        matches!(refused, ProviderError::BudgetExceeded(_)),
        "{refused}"
    );
    assert_eq!(remote.generations.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_profile_whose_every_model_is_over_budget_is_refused_not_reported_down() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Scripted::new("ollama", &["big", "huge"], true);
    // The default is priced too: nothing local to fall back on.
    let r = Registry::new(
        vec![remote.clone()],
        config(&format!(
            "default = \"huge@ollama\"\n[profiles]\npremium = [\"big@ollama\"]\n\
             [budgets]\ndaily = 0.000001\n{PRICED}"
        )),
    )
    .with_usage(ledger(dir.path()));
    let caller = skillkernel_providers::usage::Caller::session("s");
    let (_, stream) = r
        .stream_for(&caller, request("premium", 0.7), CancellationToken::new())
        .await
        .unwrap();
    skillkernel_providers::collect(stream).await.unwrap();
    let refused = match r
        .stream_for(&caller, request("premium", 0.7), CancellationToken::new())
        .await
    {
        Err(e) => e,
        Ok((route, _)) => panic!("answered by {}", route.spec()),
    };
    assert!(
        matches!(&refused, ProviderError::BudgetExceeded(m) if m.contains("daily budget")),
        "{refused}"
    );
}
