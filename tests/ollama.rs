//! The Ollama backend against the fake Ollama server, over real sockets.

use std::time::{Duration, Instant};

use futures::StreamExt;
use harness::fake_ollama::{ChatScript, Config, FakeOllama};
use skillkernel_providers::ollama::OllamaProvider;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, GenerationStats, Provider, ProviderError,
    PullProgress, StreamEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn provider(fake: &FakeOllama) -> OllamaProvider {
    OllamaProvider::new(Some(&fake.url())).expect("provider")
}

fn ask(model: &str, question: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        messages: vec![ChatMessage::new("user", question)],
        options: GenerationOptions::default(),
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    }
}

/// Every event of a generation, with a time limit so a hang fails the test.
async fn events(
    provider: &OllamaProvider,
    request: CompletionRequest,
) -> Vec<Result<StreamEvent, ProviderError>> {
    let stream = provider
        .stream(request, CancellationToken::new())
        .await
        .expect("stream starts");
    tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends")
}

fn texts(events: &[Result<StreamEvent, ProviderError>]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(StreamEvent::Text(t)) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn done(events: &[Result<StreamEvent, ProviderError>]) -> GenerationStats {
    match events.last() {
        Some(Ok(StreamEvent::Done(stats))) => stats.clone(),
        other => panic!("no Done at the end: {other:?} in {events:?}"),
    }
}

async fn pull_all(
    provider: &OllamaProvider,
    model: &str,
) -> Vec<Result<PullProgress, ProviderError>> {
    let stream = provider.pull(model).await.expect("pull starts");
    tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
        .await
        .expect("the pull stream ends")
}

#[tokio::test]
async fn list_maps_tags_with_details() {
    let fake = FakeOllama::start(Config::default()).await;
    let models = provider(&fake).list().await.expect("list");
    assert_eq!(models.len(), 1, "{models:?}");
    let m = &models[0];
    assert_eq!(m.name, "llama3.2:latest");
    assert_eq!(m.backend, "ollama");
    assert_eq!(m.size_bytes, Some(2_019_393_189));
    assert_eq!(m.family.as_deref(), Some("llama"));
    assert_eq!(m.quantization.as_deref(), Some("Q4_K_M"));
    let request = fake.last_request("/api/tags").expect("GET /api/tags");
    assert_eq!(request.method, "GET");
}

#[tokio::test]
async fn info_reads_show_and_the_context_length_of_the_architecture() {
    let fake = FakeOllama::start(Config::default()).await;
    let info = provider(&fake).info("llama3.2").await.expect("info");
    assert_eq!(info.name, "llama3.2");
    assert_eq!(info.family.as_deref(), Some("llama"));
    assert_eq!(info.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(info.context_length, Some(131_072));
    assert_eq!(info.size_bytes, Some(2_019_393_189));
    let request = fake.last_request("/api/show").expect("POST /api/show");
    assert_eq!(request.body["model"], "llama3.2");
}

#[tokio::test]
async fn status_reports_the_server_version() {
    let fake = FakeOllama::start(Config::default()).await;
    let status = provider(&fake).status().await;
    assert!(status.available, "{status:?}");
    assert_eq!(status.backend, "ollama");
    assert_eq!(status.version.as_deref(), Some("0.6.2"));
    assert!(status.detail.contains(&fake.url()), "{}", status.detail);
}

#[tokio::test]
async fn chat_text_split_across_chunks_arrives_whole_and_in_order() {
    let fake = FakeOllama::start(Config::default()).await;
    let events = events(&provider(&fake), ask("llama3.2", "Capital of France?")).await;
    // The fake cuts every line in two, inside "—", "é" and the flag.
    assert_eq!(
        texts(&events),
        ["Paris", " —", " café", " 🇫🇷", "."],
        "{events:?}"
    );
    assert_eq!(texts(&events).concat(), "Paris — café 🇫🇷.");
}

#[tokio::test]
async fn stats_come_from_the_final_line() {
    let fake = FakeOllama::start(Config::default()).await;
    let stats = done(&events(&provider(&fake), ask("llama3.2", "Hi")).await);
    let script = ChatScript::default();
    assert_eq!(stats.prompt_tokens, script.prompt_eval_count);
    assert_eq!(stats.completion_tokens, script.eval_count);
    assert_eq!(stats.finish_reason, "stop");
    let ms = |ns: u64| ns as f64 / 1e6;
    assert!((stats.prompt_ms - ms(script.prompt_eval_duration_ns)).abs() < 1e-6);
    assert!((stats.total_ms - ms(script.total_duration_ns)).abs() < 1e-6);
    let first = stats.first_token_ms.expect("first token time");
    let decode = ms(script.eval_duration_ns);
    assert!((stats.total_ms - first - decode).abs() < 1e-6, "{stats:?}");
    let rate = (script.eval_count - 1) as f64 * 1000.0 / decode;
    assert!((stats.tokens_per_second() - rate).abs() < 1e-6);
}

#[tokio::test]
async fn a_length_stop_is_reported_as_such() {
    let fake = FakeOllama::start(Config::default()).await;
    fake.configure(|c| c.chat.done_reason = "length".into());
    let stats = done(&events(&provider(&fake), ask("llama3.2", "Hi")).await);
    assert_eq!(stats.finish_reason, "length");
}

#[tokio::test]
async fn generation_options_are_sent_as_ollama_options() {
    let fake = FakeOllama::start(Config::default()).await;
    let mut request = ask("llama3.2", "Hi");
    request
        .messages
        .insert(0, ChatMessage::new("system", "Be brief."));
    request.options = GenerationOptions {
        max_tokens: 64,
        temperature: 0.25,
        top_k: Some(20),
        top_p: Some(0.5),
        repeat_penalty: Some(1.25),
        seed: Some(42),
        stop: vec!["###".into()],
    };
    let completion = provider(&fake)
        .complete(request, CancellationToken::new())
        .await
        .expect("complete");
    assert_eq!(completion.text, "Paris — café 🇫🇷.");
    let sent = fake.last_request("/api/chat").expect("POST /api/chat").body;
    assert_eq!(sent["model"], "llama3.2");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "Hi");
    let o = &sent["options"];
    assert_eq!(o["num_predict"], 64);
    assert_eq!(o["temperature"], 0.25);
    assert_eq!(o["top_k"], 20);
    assert_eq!(o["top_p"], 0.5);
    assert_eq!(o["repeat_penalty"], 1.25);
    assert_eq!(o["seed"], 42);
    assert_eq!(o["stop"], serde_json::json!(["###"]));
}

#[tokio::test]
async fn an_error_line_mid_chat_is_an_error_not_a_short_answer() {
    let fake = FakeOllama::start(Config::default()).await;
    fake.configure(|c| {
        c.chat.error_after = Some((2, "llama runner process has terminated".into()))
    });
    let events = events(&provider(&fake), ask("llama3.2", "Hi")).await;
    assert_eq!(texts(&events), ["Paris", " —"]);
    match events.last() {
        Some(Err(ProviderError::Inference(m))) => {
            assert!(m.contains("llama runner process has terminated"), "{m}")
        }
        other => panic!("expected the server's error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_model_is_model_not_found_with_a_hint_to_pull() {
    let fake = FakeOllama::start(Config::default()).await;
    let provider = provider(&fake);
    let chat = provider
        .stream(ask("mistral", "Hi"), CancellationToken::new())
        .await;
    let info = provider.info("mistral").await;
    let remove = provider.remove("mistral").await;
    for (what, result) in [
        ("chat", chat.err()),
        ("info", info.err()),
        ("remove", remove.err()),
    ] {
        match result {
            Some(ProviderError::ModelNotFound { model, hint }) => {
                assert_eq!(model, "mistral", "{what}");
                assert!(hint.contains("ollama pull mistral"), "{what}: {hint}");
                assert!(hint.contains("model 'mistral' not found"), "{what}: {hint}");
            }
            other => panic!("{what}: expected ModelNotFound, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn pull_streams_progress_to_success_and_installs_the_model() {
    let fake = FakeOllama::start(Config::default()).await;
    let provider = provider(&fake);
    let items = pull_all(&provider, "qwen2.5:0.5b").await;
    let progress: Vec<PullProgress> = items.into_iter().map(|i| i.expect("no errors")).collect();
    let statuses: Vec<&str> = progress.iter().map(|p| p.status.as_str()).collect();
    assert_eq!(statuses.first(), Some(&"pulling manifest"));
    assert_eq!(
        &statuses[statuses.len() - 3..],
        ["verifying sha256 digest", "writing manifest", "success"]
    );
    let downloads: Vec<&PullProgress> = progress
        .iter()
        .filter(|p| p.status.starts_with("pulling ") && p.total_bytes.is_some())
        .collect();
    assert_eq!(downloads.len(), 5, "{progress:?}");
    assert!(downloads
        .iter()
        .all(|p| p.total_bytes == Some(2_019_393_189)));
    assert_eq!(
        downloads.last().and_then(|p| p.completed_bytes),
        Some(2_019_393_189)
    );
    let list = provider.list().await.expect("list");
    assert!(list.iter().any(|m| m.name == "qwen2.5:0.5b"), "{list:?}");
}

#[tokio::test]
async fn an_error_line_mid_pull_ends_the_stream_with_the_server_message() {
    let fake = FakeOllama::start(Config::default()).await;
    fake.configure(|c| {
        c.pull_error = Some("max retries exceeded: connection reset by peer".into())
    });
    let items = pull_all(&provider(&fake), "qwen2.5:0.5b").await;
    let (last, before) = items.split_last().expect("some items");
    assert!(before.iter().all(Result::is_ok), "{items:?}");
    assert!(
        before.len() >= 3,
        "progress came before the error: {items:?}"
    );
    match last {
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("max retries exceeded: connection reset by peer"),
                "{m}"
            );
            assert!(m.contains("qwen2.5:0.5b"), "{m}");
        }
        Ok(p) => panic!("the pull ended without an error: {p:?}"),
    }
    assert!(!fake.installed().contains(&"qwen2.5:0.5b".to_owned()));
}

#[tokio::test]
async fn pulling_a_name_the_registry_does_not_have_fails_with_its_message() {
    let fake = FakeOllama::start(Config::default()).await;
    let items = pull_all(&provider(&fake), "no-such-model").await;
    match items.last() {
        Some(Err(e)) => assert!(e.to_string().contains("file does not exist"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn remove_deletes_the_model() {
    let fake = FakeOllama::start(Config::default()).await;
    provider(&fake).remove("llama3.2").await.expect("remove");
    assert!(fake.installed().is_empty());
    let request = fake
        .last_request("/api/delete")
        .expect("DELETE /api/delete");
    assert_eq!(request.method, "DELETE");
}

/// Asserts that `call` fails as Unavailable, naming the host and what to
/// do, within `limit`.
async fn fails_unavailable<T>(
    what: &str,
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> String {
    let started = Instant::now();
    let result = tokio::time::timeout(limit * 3, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"));
    let elapsed = started.elapsed();
    assert!(elapsed < limit, "{what} took {elapsed:?}");
    match result {
        Err(ProviderError::Unavailable { backend, reason }) => {
            assert_eq!(backend, "ollama");
            assert!(reason.contains("ollama serve"), "{what}: {reason}");
            assert!(reason.contains("OLLAMA_HOST"), "{what}: {reason}");
            reason
        }
        Err(other) => panic!("{what}: expected Unavailable, got {other:?}"),
        Ok(_) => panic!("{what}: succeeded with no server"),
    }
}

#[tokio::test]
async fn no_server_is_unavailable_at_once() {
    let url = format!("http://127.0.0.1:{}", harness::free_port());
    let provider = OllamaProvider::new(Some(&url)).expect("provider");
    let limit = Duration::from_secs(3);
    let reason = fails_unavailable("list", limit, provider.list()).await;
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(reason.contains(&url), "{reason}");
    fails_unavailable("info", limit, provider.info("llama3.2")).await;
    fails_unavailable("remove", limit, provider.remove("llama3.2")).await;
    fails_unavailable("pull", limit, provider.pull("llama3.2")).await;
    let chat = provider.stream(ask("llama3.2", "Hi"), CancellationToken::new());
    fails_unavailable("chat", limit, chat).await;
    let status = provider.status().await;
    assert!(!status.available);
    assert!(
        status.detail.contains("connection refused"),
        "{}",
        status.detail
    );
}

#[tokio::test]
async fn a_host_that_never_answers_fails_within_the_connect_timeout() {
    let blackhole = harness::fake_ollama::Blackhole::new();
    let provider = OllamaProvider::new(Some(&blackhole.url)).expect("provider");
    let started = Instant::now();
    let reason = fails_unavailable("list", Duration::from_secs(5), provider.list()).await;
    assert!(reason.contains("no answer within 2 s"), "{reason}");
    // It really waited for the connect timeout: the SYN went unanswered.
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn cancelling_stops_the_stream_and_hangs_up() {
    let fake = FakeOllama::start(Config::default()).await;
    fake.configure(|c| {
        c.chat.pieces = vec!["word ".to_owned(); 400];
        c.chat.pause = Duration::from_millis(25);
    });
    let cancel = CancellationToken::new();
    let mut stream = provider(&fake)
        .stream(ask("llama3.2", "Write a novel"), cancel.clone())
        .await
        .expect("stream starts");
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(StreamEvent::Text(_))))),
        "{first:?}"
    );
    cancel.cancel();
    let cancelled_at = Instant::now();
    let mut rest = Vec::new();
    // Texts already decoded may still come, then Done.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("the stream ends promptly after a cancel")
            .expect("a Done event");
        let is_done = matches!(event, Ok(StreamEvent::Done(_)));
        rest.push(event);
        if is_done {
            break;
        }
    }
    assert!(
        cancelled_at.elapsed() < Duration::from_millis(500),
        "{:?}",
        cancelled_at.elapsed()
    );
    let stats = done(&rest);
    assert_eq!(stats.finish_reason, "cancelled");
    assert!(
        stats.completion_tokens >= 1 && stats.completion_tokens < 400,
        "{stats:?}"
    );
    // The connection is dropped with Done, even while the stream itself is
    // still held, so Ollama stops generating.
    let deadline = Instant::now() + Duration::from_secs(3);
    while fake.chat_disconnects() == 0 {
        assert!(Instant::now() < deadline, "the client did not hang up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn a_cancel_before_the_answer_is_cancelled() {
    let fake = FakeOllama::start(Config::default()).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let result = provider(&fake).stream(ask("llama3.2", "Hi"), cancel).await;
    assert!(
        matches!(result, Err(ProviderError::Cancelled)),
        "{:?}",
        result.err()
    );
}

/// One raw HTTP exchange with the fake: the answer's head and its chunks
/// (or whole body).
async fn raw(fake: &FakeOllama, request: &str) -> (String, Vec<Vec<u8>>) {
    let mut socket = tokio::net::TcpStream::connect(fake.addr())
        .await
        .expect("connect");
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut bytes))
        .await
        .expect("answer ends")
        .expect("read");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head")
        + 4;
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut body = &bytes[split..];
    if !head.contains("Transfer-Encoding: chunked") {
        return (head, vec![body.to_vec()]);
    }
    let mut chunks = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).expect("hex"), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        chunks.push(body[eol + 2..eol + 2 + size].to_vec());
        body = &body[eol + 2 + size + 2..];
    }
    (head, chunks)
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn the_fake_really_splits_lines_and_characters_across_chunks() {
    let fake = FakeOllama::start(Config::default()).await;
    let (head, chunks) = raw(
        &fake,
        &post("/api/chat", r#"{"model":"llama3.2","messages":[]}"#),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/x-ndjson"), "{head}");
    assert!(
        chunks.iter().any(|c| std::str::from_utf8(c).is_err()),
        "no chunk splits a character"
    );
    assert!(
        chunks.iter().any(|c| !c.ends_with(b"\n")),
        "no chunk splits a line"
    );
    let body = String::from_utf8(chunks.concat()).expect("whole body is UTF-8");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(
        lines.last().map(|l| l["done"].clone()),
        Some(serde_json::json!(true))
    );
}

#[tokio::test]
async fn the_fake_honours_stream_false() {
    let fake = FakeOllama::start(Config::default()).await;
    let (head, body) = raw(
        &fake,
        &post(
            "/api/chat",
            r#"{"model":"llama3.2","messages":[],"stream":false}"#,
        ),
    )
    .await;
    assert!(head.contains("Content-Length"), "{head}");
    let answer: serde_json::Value =
        serde_json::from_slice(&body.concat()).expect("one JSON object");
    assert_eq!(answer["message"]["content"], "Paris — café 🇫🇷.");
    assert_eq!(answer["done"], true);
    assert_eq!(answer["eval_count"], 5);
}
