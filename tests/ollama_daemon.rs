//! The Ollama backend through the real daemon, against the fake Ollama:
//! both backends in `%model list`, a prompt cell streamed from Ollama,
//! `%model pull …@ollama` with progress, routing profiles falling back to
//! the embedded model when Ollama is down. Uses the real default model
//! (`SKILLKERNEL_MODEL_DIR`) as the local fallback.

use std::path::PathBuf;

use harness::fake_ollama::{Config, FakeOllama};
use harness::{run, Daemon};

fn model_dir() -> String {
    harness::default_model_dir()
}

fn config_file(dir: &std::path::Path, body: &str) -> PathBuf {
    let path = dir.join("skillkernel.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Every text the cell displayed, joined.
fn shown(outcome: &skillctl::ExecuteOutcome) -> String {
    outcome
        .iopub
        .iter()
        .filter(|m| matches!(m.msg_type(), "display_data" | "update_display_data"))
        .flat_map(|m| {
            ["text/plain", "text/markdown"]
                .map(|mime| m.content["data"][mime].as_str().unwrap_or("").to_owned())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_list_and_a_prompt_streams_from_ollama() {
    let fake = FakeOllama::start(Config::default()).await;
    let daemon = Daemon::start(&["--model-dir", &model_dir(), "--ollama-host", &fake.url()]);
    let mut client = daemon.client().await;

    let list = run(&mut client, "%model list").await;
    let text = shown(&list);
    assert!(
        text.contains("smollm2-135m-instruct.q4_1") && text.contains("candle"),
        "{text}"
    );
    assert!(
        text.contains("llama3.2:latest") && text.contains("ollama") && text.contains("Q4_K_M"),
        "{text}"
    );

    let status = run(&mut client, "%model status").await;
    assert!(
        shown(&status).contains("0.6.2"),
        "Ollama's version: {}",
        shown(&status)
    );

    let used = run(&mut client, "%model use llama3.2:latest").await;
    assert_eq!(used.status(), "ok", "{:?}", used.reply.content);
    let answer = run(&mut client, "What is the capital of France?").await;
    assert_eq!(answer.status(), "ok", "{:?}", answer.reply.content);
    let markdown = answer
        .iopub
        .iter()
        .filter_map(|m| m.content["data"]["text/markdown"].as_str())
        .last()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(markdown, "Paris — café 🇫🇷.");
    let meta = &answer.reply.metadata["model"];
    assert_eq!(meta["name"], "llama3.2:latest@ollama");
    assert_eq!(meta["completion_tokens"], 5);
    let chat = fake.last_request("/api/chat").expect("a chat request");
    let messages = chat.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(
        messages.last().unwrap()["content"],
        "What is the capital of France?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_through_ollama_shows_progress_and_errors_mid_pull_are_reported() {
    let fake = FakeOllama::start(Config::default()).await;
    let daemon = Daemon::start(&["--model-dir", &model_dir(), "--ollama-host", &fake.url()]);
    let mut client = daemon.client().await;

    let pulled = run(&mut client, "%model pull qwen2.5:0.5b").await;
    assert_eq!(pulled.status(), "ok", "{:?}", pulled.reply.content);
    assert!(
        pulled.of_type("update_display_data").count() > 0,
        "progress updates in place"
    );
    let bars: Vec<&str> = pulled
        .iopub
        .iter()
        .filter_map(|m| m.content["data"]["text/html"].as_str())
        .filter(|h| h.contains("<progress"))
        .collect();
    assert!(
        bars.iter().any(|h| h.contains("100%")),
        "the bar reaches 100%: {bars:?}"
    );
    assert!(
        fake.installed().iter().any(|m| m.starts_with("qwen2.5")),
        "{:?}",
        fake.installed()
    );

    fake.configure(|c| c.pull_error = Some("max retries exceeded: connection reset".into()));
    let broken = run(&mut client, "%model pull qwen2.5:0.5b@ollama").await;
    assert_eq!(broken.status(), "error");
    let evalue = broken.reply.content["evalue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(evalue.contains("max retries exceeded"), "{evalue}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_use_ollama_when_up_and_fall_back_to_the_local_model_when_down() {
    let fake = FakeOllama::start(Config::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            "[models]\ndefault = \"smollm2\"\n[models.ollama]\nhost = \"{}\"\n[models.profiles]\npremium = [\"llama3.2:latest@ollama\"]\n",
            fake.url()
        ),
    );
    let daemon = Daemon::start(&[
        "--model-dir",
        &model_dir(),
        "--config",
        config.to_str().unwrap(),
        "--max-tokens",
        "8",
    ]);
    let mut client = daemon.client().await;
    let used = run(&mut client, "%model use premium").await;
    assert!(
        shown(&used).contains("premium") && shown(&used).contains("llama3.2:latest"),
        "{}",
        shown(&used)
    );
    let up = run(&mut client, "Hello?").await;
    assert_eq!(up.reply.metadata["model"]["name"], "llama3.2:latest@ollama");
    assert_eq!(up.reply.metadata["model"]["profile"], "premium");

    drop(fake); // Ollama goes away.
    let down = run(&mut client, "Hello again?").await;
    assert_eq!(down.status(), "ok", "{:?}", down.reply.content);
    assert_eq!(
        down.reply.metadata["model"]["name"],
        "smollm2-135m-instruct.q4_1@candle"
    );
    assert_eq!(down.reply.metadata["model"]["profile"], "premium");

    let pinned = run(&mut client, "%model use llama3.2:latest@ollama").await;
    assert_eq!(pinned.reply.content["ename"], "ModelUnavailableError");
    let evalue = pinned.reply.content["evalue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        evalue.contains("ollama serve") || evalue.contains("OLLAMA_HOST"),
        "{evalue}"
    );
}
