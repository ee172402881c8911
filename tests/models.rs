//! Prompt cells through the real daemon with the real default model
//! (SmolLM2-135M-Instruct from `SKILLKERNEL_MODEL_DIR`; `scripts/test`
//! fetches it).

use std::time::{Duration, Instant};

use harness::{run, Daemon};
use skillctl::{ExecuteOptions, OutputHandler};
use skillkernel_protocol::Message;

fn model_dir() -> String {
    harness::default_model_dir()
}

/// The final Markdown of a streamed answer.
fn answer(outcome: &skillctl::ExecuteOutcome) -> String {
    outcome
        .iopub
        .iter()
        .filter(|m| matches!(m.msg_type(), "display_data" | "update_display_data"))
        .filter_map(|m| m.content["data"]["text/markdown"].as_str())
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_cell_streams_the_answer_and_keeps_the_conversation() {
    let dir = model_dir();
    let daemon = Daemon::start(&["--model-dir", &dir, "--repeat-penalty", "1.0"]);
    let mut client = daemon.client().await;
    let outcome = run(&mut client, "What is the capital of France?").await;
    assert_eq!(outcome.status(), "ok", "{:?}", outcome.reply.content);
    let text = answer(&outcome);
    assert!(text.contains("Paris"), "answer: {text:?}");
    let first = outcome
        .of_type("display_data")
        .next()
        .expect("a display opened");
    let id = &first.content["transient"]["display_id"];
    assert!(id.is_string());
    for update in outcome.of_type("update_display_data") {
        assert_eq!(
            &update.content["transient"]["display_id"], id,
            "updates in place"
        );
    }
    let meta = &outcome.reply.metadata["model"];
    assert!(meta["completion_tokens"].as_u64().unwrap() > 0);
    assert!(meta["prompt_tokens"].as_u64().unwrap() > 10);
    assert_eq!(meta["name"], "smollm2-135m-instruct.q4_1@candle");
    assert_eq!(meta["cached"], false);

    // The next turn sees the first: its prompt is longer.
    let second = run(&mut client, "Say that again.").await;
    assert_eq!(second.status(), "ok");
    let tokens = second.reply.metadata["model"]["prompt_tokens"]
        .as_u64()
        .unwrap();
    assert!(tokens > meta["prompt_tokens"].as_u64().unwrap() + 5);

    let stats = run(&mut client, "%model stats").await;
    let table = stats.of_type("display_data").next().unwrap().content["data"]["text/plain"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = table
        .lines()
        .find(|l| l.starts_with("smollm2-135m"))
        .unwrap_or_else(|| panic!("no row for the model: {table}"));
    assert_eq!(
        row.split_whitespace().nth(1),
        Some("2"),
        "two turns: {table}"
    );
}

/// Interrupts `delay` after the answer starts showing; records when.
struct InterruptAfterFirstText {
    interrupter: Option<skillctl::Interrupter>,
    delay: Duration,
    sent_at: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl OutputHandler for InterruptAfterFirstText {
    fn on_iopub(&mut self, msg: &Message) {
        if msg.msg_type() != "display_data" {
            return;
        }
        if let Some(interrupter) = self.interrupter.take() {
            let (delay, sent_at) = (self.delay, self.sent_at.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                *sent_at.lock().unwrap() = Some(Instant::now());
                interrupter.interrupt().await
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_generation_and_keeps_what_was_said() {
    let dir = model_dir();
    let daemon = Daemon::start(&["--model-dir", &dir, "--max-tokens", "2000"]);
    let mut client = daemon.client().await;
    let mut handler = InterruptAfterFirstText {
        interrupter: Some(client.interrupter()),
        delay: Duration::from_millis(1500),
        sent_at: Default::default(),
    };
    let outcome = client
        .execute(
            "Write a very long story about a dragon who learns to sing.",
            &ExecuteOptions {
                timeout: Duration::from_secs(120),
                ..ExecuteOptions::default()
            },
            &mut handler,
        )
        .await
        .unwrap();
    let ended = Instant::now();
    let sent_at = handler.sent_at.lock().unwrap().expect("interrupt sent");
    assert_eq!(outcome.reply.content["ename"], "KeyboardInterrupt");
    assert!(
        ended.duration_since(sent_at) < Duration::from_secs(2),
        "generation stopped promptly"
    );
    let partial = answer(&outcome);
    assert!(!partial.is_empty(), "what was said is kept on screen");
    // … and in the conversation: the next turn's prompt includes it. (That
    // turn is cut short as soon as it speaks; its metadata still counts
    // the prompt.)
    let mut cut = InterruptOnFirstText(Some(client.interrupter()));
    let next = client
        .execute("Thanks.", &ExecuteOptions::default(), &mut cut)
        .await
        .unwrap();
    let prompt_tokens = next.reply.metadata["model"]["prompt_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        prompt_tokens > 40,
        "prompt holds the story so far: {prompt_tokens}"
    );
}

struct InterruptOnFirstText(Option<skillctl::Interrupter>);

impl OutputHandler for InterruptOnFirstText {
    fn on_iopub(&mut self, msg: &Message) {
        if msg.msg_type() == "display_data" {
            if let Some(interrupter) = self.0.take() {
                tokio::spawn(async move { interrupter.interrupt().await });
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_magic_lists_describes_and_chooses_models() {
    let dir = model_dir();
    let daemon = Daemon::start(&["--model-dir", &dir]);
    let mut client = daemon.client().await;
    let list = run(&mut client, "%model list").await;
    let table = list.of_type("display_data").next().expect("a table");
    let text = table.content["data"]["text/plain"].as_str().unwrap();
    assert!(text.contains("smollm2-135m-instruct.q4_1"), "{text}");
    assert!(text.contains("llama") && text.contains("Q4_1"), "{text}");
    assert!(table.content["data"]["text/html"]
        .as_str()
        .unwrap()
        .contains("<table>"));

    let missing = run(&mut client, "%model use no-such-model").await;
    assert_eq!(missing.reply.content["ename"], "ModelNotFoundError");

    let chosen = run(&mut client, "%model use smollm2").await;
    assert_eq!(chosen.status(), "ok");
    let status = run(&mut client, "%model status").await;
    let shown: String = status
        .of_type("display_data")
        .flat_map(|m| {
            ["text/plain", "text/markdown"]
                .map(|mime| m.content["data"][mime].as_str().unwrap_or("").to_owned())
        })
        .collect();
    assert!(
        shown.contains("smollm2-135m-instruct.q4_1@candle"),
        "{shown}"
    );
    assert!(
        shown.contains(&dir),
        "the backend table shows the model dir: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cell_prompt_fills_variables_and_leaves_the_conversation_alone() {
    let dir = model_dir();
    let daemon = Daemon::start(&["--model-dir", &dir, "--repeat-penalty", "1.0"]);
    let mut client = daemon.client().await;
    run(&mut client, "%set country = France").await;
    let first = run(
        &mut client,
        "%%prompt\nWhat is the capital of {{ country }}?",
    )
    .await;
    assert_eq!(first.status(), "ok", "{:?}", first.reply.content);
    assert!(answer(&first).contains("Paris"), "{}", answer(&first));
    // Not part of the conversation: the same one-shot costs the same prompt.
    let again = run(&mut client, "%%prompt\nWhat is the capital of {{country}}?").await;
    assert_eq!(
        again.reply.metadata["model"]["prompt_tokens"],
        first.reply.metadata["model"]["prompt_tokens"]
    );
    let missing = run(&mut client, "%%prompt\nHello {{nobody}}").await;
    assert_eq!(missing.reply.content["ename"], "NameError");
}

#[test]
fn skillctl_chat_streams_the_answer_to_the_terminal() {
    let dir = model_dir();
    let daemon = Daemon::start(&["--model-dir", &dir, "--repeat-penalty", "1.0"]);
    let out = daemon.skillctl(&["chat", "What is the capital of France?"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Paris"), "{text}");
    assert_eq!(
        text.matches("Paris").count(),
        1,
        "printed once, not per update: {text}"
    );
    let refused = daemon.skillctl(&["chat", "%vars"]);
    assert_eq!(refused.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_request_answers_list_info_status_use_with_structured_data() {
    use serde_json::json;
    use skillctl::Target;
    let dir = model_dir();
    let daemon = Daemon::start(&["--model-dir", &dir]);
    let mut client = daemon.client().await;
    let t = Duration::from_secs(20);
    let list = client
        .request(Target::Shell, "model_request", json!({"action": "list"}), t)
        .await
        .unwrap();
    assert_eq!(list.msg_type(), "model_reply");
    assert_eq!(list.content["status"], "ok");
    let models = list.content["models"].as_array().unwrap();
    assert!(models
        .iter()
        .any(|m| m["name"] == "smollm2-135m-instruct.q4_1"
            && m["backend"] == "candle"
            && m["quantization"] == "Q4_1"));
    let info = client
        .request(Target::Shell, "model_request", json!({"action": "info"}), t)
        .await
        .unwrap();
    assert_eq!(info.content["model"]["family"], "llama");
    assert_eq!(info.content["model"]["context_length"], 8192);
    let status = client
        .request(
            Target::Shell,
            "model_request",
            json!({"action": "status"}),
            t,
        )
        .await
        .unwrap();
    assert_eq!(status.content["providers"][0]["available"], true);
    let used = client
        .request(
            Target::Shell,
            "model_request",
            json!({"action": "use", "model": "smollm2"}),
            t,
        )
        .await
        .unwrap();
    assert_eq!(used.content["current"], "smollm2-135m-instruct.q4_1@candle");
    let bad = client
        .request(
            Target::Shell,
            "model_request",
            json!({"action": "use", "model": "nope"}),
            t,
        )
        .await
        .unwrap();
    assert_eq!(bad.content["status"], "error");
    assert_eq!(bad.content["ename"], "ModelNotFoundError");
    let unknown = client
        .request(
            Target::Shell,
            "model_request",
            json!({"action": "dance"}),
            t,
        )
        .await
        .unwrap();
    assert_eq!(unknown.content["ename"], "UsageError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_import_makes_a_local_file_usable_from_a_cell() {
    let source = std::path::Path::new(&model_dir()).join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let empty = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&["--model-dir", empty.path().to_str().unwrap()]);
    let mut client = daemon.client().await;
    let imported = run(
        &mut client,
        &format!("%model import {} smol", source.display()),
    )
    .await;
    assert_eq!(imported.status(), "ok", "{:?}", imported.reply.content);
    assert!(empty.path().join("smol.gguf").exists());
    let used = run(&mut client, "%model use smol").await;
    assert_eq!(used.status(), "ok");
    let bad = run(&mut client, "%model import /etc/hostname").await;
    assert_eq!(bad.reply.content["ename"], "InvalidModelError");
}

/// Open questions, each in a fresh session, on the default model with the
/// default generation settings.
const OPEN_PROMPTS: [&str; 5] = [
    "What is the capital of France?",
    "Tell me about the ocean.",
    "Why do cats purr?",
    "Write a short poem about autumn.",
    "What should I cook tonight?",
];

/// Runs each open prompt as a `%%prompt` cell; returns (answer,
/// finish_reason) pairs.
async fn open_answers(args: &[&str]) -> Vec<(String, String)> {
    let dir = model_dir();
    let mut all = vec!["--model-dir", dir.as_str()];
    all.extend_from_slice(args);
    let daemon = Daemon::start(&all);
    let mut client = daemon.client().await;
    let mut out = Vec::new();
    for prompt in OPEN_PROMPTS {
        let outcome = run(&mut client, &format!("%%prompt\n{prompt}")).await;
        assert_eq!(outcome.status(), "ok", "{:?}", outcome.reply.content);
        let reason = outcome.reply.metadata["model"]["finish_reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.push((answer(&outcome), reason));
    }
    out
}

/// The default settings (repeat penalty 1.2, loops stopped) end every open
/// answer on its own; with no penalty (1.0) the same model falls into
/// loops, and the guard stops them (`finish_reason` `repetition`) instead
/// of letting them run to the token limit. (At 1.1 it looped with an f32
/// KV cache and no longer does with f16: which answers loop at a given
/// penalty tips on near ties.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_prompts_on_the_default_model_end_and_a_loop_is_stopped() {
    let defaults = open_answers(&[]).await;
    for ((text, reason), prompt) in defaults.iter().zip(OPEN_PROMPTS) {
        assert!(!text.trim().is_empty(), "{prompt}: no answer");
        assert!(
            reason == "stop" || reason == "repetition",
            "{prompt} ran to its limit [{reason}]: {text}"
        );
    }

    let looser = open_answers(&["--repeat-penalty", "1.0"]).await;
    let stopped: Vec<&String> = looser
        .iter()
        .filter(|(_, reason)| reason == "repetition")
        .map(|(text, _)| text)
        .collect();
    assert!(
        !stopped.is_empty(),
        "without a penalty some answer loops and is stopped: {looser:?}"
    );
    for ((text, reason), prompt) in looser.iter().zip(OPEN_PROMPTS) {
        assert_ne!(reason, "length", "{prompt} looped to its limit: {text}");
    }
}

/// `%model status` as text.
async fn model_status(client: &mut skillctl::KernelClient) -> String {
    let status = run(client, "%model status").await;
    status
        .of_type("display_data")
        .flat_map(|m| {
            ["text/plain", "text/markdown"]
                .map(|mime| m.content["data"][mime].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

/// The KV cache of the conversation shows in `%model status`, stored as
/// `[models.candle] kv_cache` says; `%clear --conversation` ends the
/// conversation and frees the cache at once, and the next prompt starts
/// afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_conversation_frees_the_kv_cache_and_starts_anew() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skillkernel.toml");
    std::fs::write(
        &config,
        format!(
            "[models]\ndir = {:?}\n\n[models.candle]\nkv_cache = \"q8_0\"\n",
            model_dir()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    let mut client = daemon.client().await;
    let first = run(&mut client, "What is the capital of France?").await;
    assert_eq!(first.status(), "ok", "{:?}", first.reply.content);
    let first_prompt = first.reply.metadata["model"]["prompt_tokens"]
        .as_u64()
        .unwrap();
    let shown = model_status(&mut client).await;
    assert!(
        shown.contains("positions") && shown.contains("MiB q8_0"),
        "the cache is held, 8-bit as configured: {shown}"
    );

    let cleared = run(&mut client, "%clear --conversation").await;
    assert_eq!(
        cleared.stream_text("stdout"),
        "Conversation cleared (1 turn); the next prompt starts a new one.\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = model_status(&mut client).await;
        if shown.contains("KV cache empty (q8_0)") {
            break;
        }
        assert!(Instant::now() < deadline, "the cache was kept: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The same question again has no earlier turn before it.
    let again = run(&mut client, "What is the capital of France?").await;
    assert_eq!(
        again.reply.metadata["model"]["prompt_tokens"].as_u64(),
        Some(first_prompt),
        "a new conversation"
    );
    assert!(answer(&again).contains("Paris"));
}
