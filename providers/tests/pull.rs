//! `pull` into the embedded backend from a Hugging Face-style hub, over
//! real HTTP against a local fake hub: progress, checksum, resume, errors.

mod support;

use std::time::Duration;

use futures::StreamExt;
use skillkernel_providers::candle::CandleProvider;
use skillkernel_providers::config::CandleConfig;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, Provider, ProviderError, PullProgress,
};
use support::fake_hub::FakeHub;
use support::tiny_gguf::{self, Shape};
use tokio_util::sync::CancellationToken;

const REPO_FILE: &str = "TinyOrg/Tiny-GGUF/tiny-pulled.Q8_0.gguf";

/// A tiny model's bytes, as the hub would hold them.
fn model_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_gguf::write(dir.path(), "tiny-pulled.Q8_0", Shape::llama(), None);
    std::fs::read(path).unwrap()
}

fn provider(models: &std::path::Path, hub: &str) -> CandleProvider {
    let mut config = CandleConfig {
        hub_url: hub.to_owned(),
        ..CandleConfig::default()
    };
    config.catalog.insert("Tiny".into(), REPO_FILE.into());
    CandleProvider::with_config(models, &config).unwrap()
}

/// Every progress step, or the error that ended the pull.
async fn pull(p: &CandleProvider, what: &str) -> (Vec<PullProgress>, Option<ProviderError>) {
    let mut stream = p.pull(what).await.unwrap();
    let mut steps = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("pull stalled")
    {
        match item {
            Ok(step) => steps.push(step),
            Err(e) => return (steps, Some(e)),
        }
    }
    (steps, None)
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_downloads_verifies_installs_and_the_model_runs() {
    let bytes = model_bytes();
    let hub = FakeHub::start(vec![(REPO_FILE.into(), bytes.clone())]).await;
    let models = tempfile::tempdir().unwrap();
    let p = provider(models.path(), &hub.url);

    let (steps, error) = pull(&p, REPO_FILE).await;
    assert!(error.is_none(), "{error:?}");
    let statuses: Vec<&str> = steps.iter().map(|s| s.status.as_str()).collect();
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("pulling tiny-pulled")),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&"verifying sha256 digest"),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&"success"));
    let total = bytes.len() as u64;
    let done: Vec<u64> = steps
        .iter()
        .filter(|s| s.total_bytes == Some(total))
        .filter_map(|s| s.completed_bytes)
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {done:?}"
    );
    assert_eq!(done.last(), Some(&total));

    assert_eq!(leftovers(models.path()), ["tiny-pulled.Q8_0.gguf"]);
    let info = p.info("tiny-pulled").await.unwrap();
    assert_eq!(info.size_bytes, Some(total));
    let request = CompletionRequest {
        model: "tiny-pulled".into(),
        messages: vec![ChatMessage::new("user", "hi")],
        options: GenerationOptions {
            max_tokens: 4,
            ..GenerationOptions::default()
        },
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    };
    let done = p.complete(request, CancellationToken::new()).await.unwrap();
    assert!(done.stats.completion_tokens > 0);

    // Pulling again finds it there and downloads nothing.
    let before = hub.requests().len();
    let (steps, error) = pull(&p, "tiny").await;
    assert!(error.is_none(), "{error:?}");
    assert!(steps[0].status.contains("already"), "{steps:?}");
    assert_eq!(hub.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_mismatch_discards_the_download() {
    let hub = FakeHub::start(vec![(REPO_FILE.into(), model_bytes())]).await;
    hub.lie_about_checksum();
    let models = tempfile::tempdir().unwrap();
    let p = provider(models.path(), &hub.url);
    let (_, error) = pull(&p, "tiny").await;
    let message = error.expect("the pull must fail").to_string();
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(
        leftovers(models.path()).is_empty(),
        "{:?}",
        leftovers(models.path())
    );
    assert!(p.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_download_is_resumed_by_the_next_pull() {
    let bytes = model_bytes();
    let hub = FakeHub::start(vec![(REPO_FILE.into(), bytes.clone())]).await;
    let half = bytes.len() / 2;
    hub.break_next_download_after(half);
    let models = tempfile::tempdir().unwrap();
    let p = provider(models.path(), &hub.url);

    let (_, error) = pull(&p, REPO_FILE).await;
    let message = error.expect("the first pull must fail").to_string();
    assert!(message.contains("pull again to resume"), "{message}");
    assert!(
        p.list().await.unwrap().is_empty(),
        "no half model may be listed"
    );

    let (steps, error) = pull(&p, REPO_FILE).await;
    assert!(error.is_none(), "{error:?}");
    assert!(
        steps.iter().any(|s| s.status.starts_with("resuming")),
        "{steps:?}"
    );
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.ends_with(&format!("range={half}"))),
        "{:?}",
        hub.requests()
    );
    assert_eq!(
        std::fs::read(models.path().join("tiny-pulled.Q8_0.gguf")).unwrap(),
        bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_files_and_unreachable_hubs_are_clear_errors() {
    let hub = FakeHub::start(vec![]).await;
    let models = tempfile::tempdir().unwrap();
    let p = provider(models.path(), &hub.url);
    let (_, error) = pull(&p, "TinyOrg/Nope/none.gguf").await;
    assert!(
        matches!(error, Some(ProviderError::ModelNotFound { .. })),
        "{error:?}"
    );

    let not_a_path = p.pull("just-a-name").await.err().expect("refused");
    assert!(
        not_a_path.to_string().contains("ORG/REPO/FILE.gguf"),
        "{not_a_path}"
    );

    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let p = provider(models.path(), &dead);
    let (_, error) = pull(&p, REPO_FILE).await;
    assert!(
        matches!(error, Some(ProviderError::Unavailable { .. })),
        "{error:?}"
    );
}
