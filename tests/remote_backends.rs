//! The OpenAI-compatible and Anthropic backends against fake servers over
//! real sockets: streaming cut anywhere, usage, errors that say what to do,
//! rate limits, timeouts, and pools that lose a host.

use std::time::{Duration, Instant};

use futures::StreamExt;
use harness::fake_llm_api::{ApiScript, FakeApi, Flavor, Refusal};
use skillkernel_providers::config::{BackendConfig, BackendKind};
use skillkernel_providers::http::RemoteProvider;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, Provider, ProviderError, StreamEvent,
};
use tokio_util::sync::CancellationToken;

fn config(kind: BackendKind, urls: Vec<String>) -> BackendConfig {
    let mut config = BackendConfig::builtin(kind);
    config.urls = urls;
    config.first_byte_timeout_secs = 5.0;
    config.connect_timeout_secs = 2.0;
    config
}

fn ask(model: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        messages: vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Say hello"),
        ],
        options: GenerationOptions::default(),
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    }
}

type Events = Vec<Result<StreamEvent, ProviderError>>;

async fn run(provider: &RemoteProvider, model: &str) -> Result<Events, ProviderError> {
    let stream = provider
        .stream(ask(model), CancellationToken::new())
        .await?;
    Ok(
        tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the stream ends"),
    )
}

fn text(events: &Events) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(StreamEvent::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_openai_stream_cut_inside_characters_arrives_whole_with_the_servers_usage() {
    let fake = FakeApi::start(Flavor::OpenAi, ApiScript::default()).await;
    let provider =
        RemoteProvider::new("gpu", &config(BackendKind::Openai, vec![fake.url()])).unwrap();
    let events = run(&provider, "fake-model").await.unwrap();
    assert_eq!(text(&events), "Hello, wörld — done.");
    let Some(Ok(StreamEvent::Done(stats))) = events.last() else {
        panic!("no Done: {events:?}");
    };
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (11, 3));
    assert_eq!(stats.finish_reason, "stop");
    assert!(stats.first_token_ms.is_some());
    let sent = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    assert_eq!(sent.body["messages"][0]["role"], "system");
    let listed = provider.list().await.unwrap();
    assert_eq!(listed[0].name, "fake-model");
    assert_eq!(listed[0].context_length, Some(8192));
    assert_eq!(listed[0].backend, "gpu");
}

#[tokio::test]
async fn an_anthropic_stream_has_its_system_field_headers_and_usage() {
    let var = "SKILLKERNEL_TEST_ANTHROPIC_KEY_1";
    std::env::set_var(var, "sk-ant-test");
    let script = ApiScript {
        api_key: Some("sk-ant-test".into()),
        ..ApiScript::default()
    };
    let fake = FakeApi::start(Flavor::Anthropic, script).await;
    let mut c = config(BackendKind::Anthropic, vec![fake.url()]);
    c.api_key_env = Some(var.into());
    let provider = RemoteProvider::new("claude", &c).unwrap();
    let events = run(&provider, "fake-model").await.unwrap();
    assert_eq!(text(&events), "Hello, wörld — done.");
    let Some(Ok(StreamEvent::Done(stats))) = events.last() else {
        panic!("no Done: {events:?}");
    };
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (11, 3));
    let sent = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["system"], "Be brief.");
    assert_eq!(sent.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-test"));
}

#[tokio::test]
async fn an_error_event_mid_answer_keeps_the_text_and_says_what_happened() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let script = ApiScript {
            error_after: Some((2, "the GPU fell over".into())),
            ..ApiScript::default()
        };
        let fake = FakeApi::start(flavor, script).await;
        let kind = if flavor == Flavor::OpenAi {
            BackendKind::Openai
        } else {
            BackendKind::Anthropic
        };
        let provider = RemoteProvider::new("far", &config(kind, vec![fake.url()])).unwrap();
        let events = run(&provider, "fake-model").await.unwrap();
        assert_eq!(text(&events), "Hello, wörld");
        let Some(Err(e)) = events.last() else {
            panic!("no error at the end: {events:?}");
        };
        let said = e.to_string();
        assert!(
            said.contains("the GPU fell over") && said.contains("kept"),
            "{said}"
        );
    }
}

#[tokio::test]
async fn a_refused_key_names_the_variable_and_a_missing_one_is_said_before_any_request() {
    let var = "SKILLKERNEL_TEST_OPENAI_KEY_2";
    std::env::set_var(var, "wrong-key");
    let script = ApiScript {
        api_key: Some("right-key".into()),
        ..ApiScript::default()
    };
    let fake = FakeApi::start(Flavor::OpenAi, script).await;
    let mut c = config(BackendKind::Openai, vec![fake.url()]);
    c.api_key_env = Some(var.into());
    let provider = RemoteProvider::new("gpu", &c).unwrap();
    let e = run(&provider, "fake-model").await.unwrap_err();
    assert!(e.to_string().contains(&format!("${var}")), "{e}");
    assert!(
        !e.to_string().contains("wrong-key"),
        "the key is never echoed: {e}"
    );

    let mut c = config(BackendKind::Openai, vec![fake.url()]);
    c.api_key_env = Some("SKILLKERNEL_TEST_NEVER_SET".into());
    let provider = RemoteProvider::new("gpu", &c).unwrap();
    assert_eq!(provider.missing_key(), Some("SKILLKERNEL_TEST_NEVER_SET"));
    let before = fake.requests().len();
    let e = run(&provider, "fake-model").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("$SKILLKERNEL_TEST_NEVER_SET is not set"),
        "{e}"
    );
    assert_eq!(fake.requests().len(), before, "nothing was sent");
}

#[tokio::test]
async fn an_unknown_model_is_answered_with_what_the_server_has() {
    let script = ApiScript {
        models: vec!["llama-3".into(), "qwen-2".into()],
        ..ApiScript::default()
    };
    let fake = FakeApi::start(Flavor::OpenAi, script).await;
    let provider =
        RemoteProvider::new("gpu", &config(BackendKind::Openai, vec![fake.url()])).unwrap();
    let e = provider.has_model("mistral").await.unwrap_err();
    assert!(matches!(e, ProviderError::ModelNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("llama-3, qwen-2"), "{e}");
    assert_eq!(provider.has_model("qwen-2").await.unwrap(), "qwen-2");
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_within_the_budget_and_then_given_up() {
    let mut script = ApiScript::default();
    script.refusals.push_back(Refusal {
        retry_after: Some(1),
        ..Refusal::json(429, "slow down")
    });
    let fake = FakeApi::start(Flavor::OpenAi, script).await;
    let provider =
        RemoteProvider::new("gpu", &config(BackendKind::Openai, vec![fake.url()])).unwrap();
    let started = Instant::now();
    let events = run(&provider, "fake-model").await.unwrap();
    assert_eq!(text(&events), "Hello, wörld — done.");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was honoured"
    );
    assert_eq!(fake.generations(), 2);

    // A server that keeps refusing, with a wait beyond the budget.
    fake.configure(|s| {
        s.always = Some(Refusal {
            retry_after: Some(30),
            ..Refusal::json(429, "quota exceeded")
        })
    });
    let started = Instant::now();
    let e = run(&provider, "fake-model").await.unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("rate-limiting"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no wait past the budget"
    );
}

#[tokio::test]
async fn a_slow_first_byte_html_and_a_dropped_stream_are_clear_errors() {
    let script = ApiScript {
        first_byte_delay: Duration::from_secs(3),
        ..ApiScript::default()
    };
    let fake = FakeApi::start(Flavor::OpenAi, script).await;
    let mut c = config(BackendKind::Openai, vec![fake.url()]);
    c.first_byte_timeout_secs = 0.5;
    let provider = RemoteProvider::new("gpu", &c).unwrap();
    let started = Instant::now();
    let e = run(&provider, "fake-model").await.unwrap_err();
    assert!(e.to_string().contains("first_byte_timeout_secs"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let html = Refusal {
        status: 502,
        content_type: "text/html",
        body: "<html><body><h1>502 Bad Gateway</h1></body></html>".into(),
        retry_after: None,
    };
    let fake = FakeApi::start(
        Flavor::OpenAi,
        ApiScript {
            always: Some(html),
            ..ApiScript::default()
        },
    )
    .await;
    let provider =
        RemoteProvider::new("gpu", &config(BackendKind::Openai, vec![fake.url()])).unwrap();
    let e = run(&provider, "fake-model").await.unwrap_err();
    assert!(e.to_string().contains("HTML page"), "{e}");

    let fake = FakeApi::start(
        Flavor::OpenAi,
        ApiScript {
            drop_after: Some(1),
            ..ApiScript::default()
        },
    )
    .await;
    let provider =
        RemoteProvider::new("gpu", &config(BackendKind::Openai, vec![fake.url()])).unwrap();
    let events = run(&provider, "fake-model").await.unwrap();
    assert_eq!(text(&events), "Hello");
    let Some(Err(e)) = events.last() else {
        panic!("a cut stream must end in an error: {events:?}");
    };
    assert!(e.to_string().contains("broke off"), "{e}");
}

#[tokio::test]
async fn a_pool_spreads_requests_and_loses_a_dead_host_without_failing_a_request() {
    let mut fakes = Vec::new();
    for _ in 0..3 {
        fakes.push(FakeApi::start(Flavor::OpenAi, ApiScript::default()).await);
    }
    let urls: Vec<String> = fakes.iter().map(FakeApi::url).collect();
    let provider = RemoteProvider::new("pool", &config(BackendKind::Openai, urls)).unwrap();
    let mut failures = 0;
    for i in 0..30 {
        if i == 10 {
            fakes[1].stop();
        }
        match run(&provider, "fake-model").await {
            Ok(events) if events.iter().all(Result::is_ok) => {}
            other => {
                failures += 1;
                eprintln!("request {i} failed: {other:?}");
            }
        }
    }
    assert_eq!(
        failures, 0,
        "failover before the first token hides the dead host"
    );
    let served: Vec<usize> = fakes.iter().map(FakeApi::generations).collect();
    assert!(
        served.iter().all(|n| *n >= 3),
        "every host took work: {served:?}"
    );
    assert!(
        served[1] <= 10,
        "the dead host took nothing after it died: {served:?}"
    );
    let status = provider.status().await;
    assert!(status.available);
    assert!(
        status.detail.starts_with("2 of 3 host(s) up"),
        "{}",
        status.detail
    );
}

#[tokio::test]
async fn pull_and_rm_say_the_backend_does_not_do_them() {
    let fake = FakeApi::start(Flavor::OpenAi, ApiScript::default()).await;
    let provider =
        RemoteProvider::new("gpu", &config(BackendKind::Openai, vec![fake.url()])).unwrap();
    let e = provider.pull("x").await.err().unwrap();
    assert!(
        e.to_string().contains("not supported by this backend"),
        "{e}"
    );
    let e = provider.remove("x").await.unwrap_err();
    assert!(
        e.to_string().contains("not supported by this backend"),
        "{e}"
    );
}
