//! Managing models through the real daemon: pulls from a local fake hub
//! with progress on IOPub, `skillctl model …`, the config file, and the
//! response cache. Uses the real default model (`SKILLKERNEL_MODEL_DIR`).

#[path = "../providers/tests/support/fake_hub.rs"]
mod fake_hub;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fake_hub::FakeHub;
use harness::{run, Daemon};
use serde_json::json;
use skillctl::{Quiet, Target};

const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const HUB_PATH: &str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf";

fn default_model() -> PathBuf {
    Path::new(&harness::default_model_dir()).join(DEFAULT_FILE)
}

/// A daemon with an empty model directory and a config pointing at a
/// fake hub that serves the default model.
struct WithHub {
    hub: FakeHub,
    daemon: Daemon,
    model_dir: PathBuf,
    _dir: tempfile::TempDir,
}

async fn with_hub(extra: &[&str]) -> WithHub {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(default_model()).unwrap();
    let hub = FakeHub::start(vec![(HUB_PATH.into(), bytes)]).await;
    let config = dir.path().join("skillkernel.toml");
    std::fs::write(
        &config,
        format!(
            "[models]\ndefault = \"smollm2\"\n[models.candle]\nhub_url = \"{}\"\n[models.candle.catalog]\nsmol-from-hub = \"{HUB_PATH}\"\n",
            hub.url
        ),
    )
    .unwrap();
    let model_dir = dir.path().join("models");
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--model-dir",
        model_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&args);
    WithHub {
        hub,
        daemon,
        model_dir,
        _dir: dir,
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_pull_in_a_cell_shows_a_progress_bar_and_the_model_then_answers() {
    let WithHub {
        hub,
        daemon,
        model_dir,
        _dir,
    } = with_hub(&["--repeat-penalty", "1.0"]).await;
    let mut client = daemon.client().await;

    let before = run(&mut client, "What is the capital of France?").await;
    assert_eq!(before.reply.content["ename"], "ModelNotFoundError");

    let pulled = run(&mut client, &format!("%model pull {HUB_PATH}")).await;
    assert_eq!(pulled.status(), "ok", "{:?}", pulled.reply.content);
    let opened = pulled
        .of_type("display_data")
        .next()
        .expect("a progress display");
    let id = opened.content["transient"]["display_id"].clone();
    assert!(id.as_str().unwrap().starts_with("pull-"));
    let updates: Vec<_> = pulled
        .of_type("update_display_data")
        .filter(|m| m.content["transient"]["display_id"] == id)
        .collect();
    assert!(!updates.is_empty(), "progress updates in place");
    let bars = pulled
        .iopub
        .iter()
        .filter_map(|m| m.content["data"]["text/html"].as_str())
        .filter(|h| h.contains("<progress"))
        .count();
    assert!(bars > 0, "an HTML progress bar");
    let last = updates.last().unwrap().content["data"]["text/plain"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.contains("success"), "{last}");
    assert!(model_dir.join(DEFAULT_FILE).exists());
    assert!(hub.requests().iter().any(|r| r.starts_with("GET /cdn/")));

    let answer = run(&mut client, "What is the capital of France?").await;
    assert_eq!(answer.status(), "ok", "{:?}", answer.reply.content);
    let said: String = answer
        .iopub
        .iter()
        .filter_map(|m| m.content["data"]["text/markdown"].as_str())
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(said.contains("Paris"), "{said}");

    let missing = run(&mut client, "%model pull HuggingFaceTB/Nope/none.gguf").await;
    assert_eq!(missing.reply.content["ename"], "ModelNotFoundError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_request_pull_reports_progress_on_iopub_and_a_structured_reply() {
    let WithHub {
        daemon,
        _dir,
        hub: _hub,
        ..
    } = with_hub(&[]).await;
    let mut client = daemon.client().await;
    let msg = client.message(
        "model_request",
        json!({"action": "pull", "model": "smol-from-hub"}),
    );
    client.send(Target::Shell, &msg).await.unwrap();
    let outcome = client
        .collect(&msg.header.msg_id, Duration::from_secs(60), &mut Quiet)
        .await
        .unwrap();
    let c = &outcome.reply.content;
    assert_eq!(c["status"], "ok", "{c}");
    assert_eq!(c["pull"]["status"], "success");
    assert_eq!(c["pull"]["backend"], "candle");
    assert_eq!(c["model"]["name"], "smollm2-135m-instruct.q4_1");
    let types: Vec<&str> = outcome.iopub.iter().map(|m| m.msg_type()).collect();
    assert_eq!(types.first(), Some(&"status"));
    assert!(
        types.contains(&"display_data") && types.contains(&"update_display_data"),
        "{types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skillctl_model_commands_pull_list_use_and_remove() {
    let WithHub {
        daemon,
        model_dir,
        _dir,
        hub: _hub,
    } = with_hub(&[]).await;

    let pull = daemon.skillctl(&["model", "pull", HUB_PATH]);
    let (out, err) = text(&pull);
    assert!(pull.status.success(), "{out}\n{err}");
    assert!(out.contains("pulled") && out.contains("candle"), "{out}");
    assert!(
        err.contains("[####################] 100%"),
        "progress on stderr: {err}"
    );
    assert!(err.contains("verifying sha256 digest"), "{err}");

    let list = daemon.skillctl(&["model", "list"]);
    let (out, err) = text(&list);
    assert!(list.status.success(), "{err}");
    assert!(
        out.contains("smollm2-135m-instruct.q4_1") && out.contains("candle"),
        "{out}"
    );
    assert!(
        err.contains("ollama not reachable"),
        "Ollama is down here: {err}"
    );

    let used = daemon.skillctl(&["model", "use", "smollm2@candle"]);
    assert!(used.status.success(), "{:?}", text(&used));
    assert!(text(&used).0.contains("smollm2-135m-instruct.q4_1@candle"));
    let list = daemon.skillctl(&["model", "list"]);
    assert!(
        text(&list)
            .0
            .lines()
            .any(|l| l.starts_with('*') && l.contains("q4_1")),
        "{:?}",
        text(&list)
    );

    let status = daemon.skillctl(&["model", "status", "--json"]);
    let reply: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(reply["providers"][0]["backend"], "candle");
    assert_eq!(reply["providers"][1]["backend"], "ollama");
    assert_eq!(reply["providers"][1]["available"], false);
    assert!(reply["cache"]["entries"].is_u64(), "{reply}");

    let info = daemon.skillctl(&["model", "info", "nothing-like-it"]);
    assert_eq!(info.status.code(), Some(1));
    assert!(
        text(&info).1.contains("ModelNotFoundError"),
        "{:?}",
        text(&info)
    );

    let rm = daemon.skillctl(&["model", "rm", "smollm2-135m-instruct.q4_1@candle"]);
    assert!(rm.status.success(), "{:?}", text(&rm));
    assert!(!model_dir.join(DEFAULT_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deterministic_answers_are_served_from_the_cache_the_second_time() {
    let dir = default_model().parent().unwrap().to_owned();
    let daemon = Daemon::start(&["--model-dir", dir.to_str().unwrap(), "--max-tokens", "16"]);
    let mut client = daemon.client().await;
    let first = run(&mut client, "%%prompt\nName a colour.").await;
    let second = run(&mut client, "%%prompt\nName a colour.").await;
    assert_eq!(first.status(), "ok", "{:?}", first.reply.content);
    assert_eq!(first.reply.metadata["model"]["cached"], false);
    assert_eq!(second.reply.metadata["model"]["cached"], true);
    let answer = |o: &skillctl::ExecuteOutcome| {
        o.iopub
            .iter()
            .filter_map(|m| m.content["data"]["text/markdown"].as_str())
            .last()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(answer(&first), answer(&second));
    assert!(daemon.dir.path().join("state/cache").exists());
}

#[test]
fn a_config_file_with_a_typo_stops_the_start_with_the_file_and_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[models]\ndefualt = \"x\"\n").unwrap();
    let out = std::process::Command::new(harness::bin("skillkernel"))
        .args(["start", "-f"])
        .arg(dir.path().join("k.json"))
        .arg("--config")
        .arg(&config)
        .env("SKILLKERNEL_SYSTEM_CONFIG", "")
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("defualt"), "{err}");
    assert!(!dir.path().join("k.json").exists(), "nothing served");
}
