//! Usage and cost through the real daemon: prompt cells and a skill on a
//! priced OpenAI-compatible backend (the fake) are recorded in the state
//! directory's ledger, reported by `%usage` and `skillctl usage --json`,
//! kept across a restart; `%model info` shows the price; a used-up daily
//! budget refuses a priced call, or hands it to the unpriced default model
//! with a notice saying which budget.

use std::path::{Path, PathBuf};

use harness::fake_llm_api::{ApiScript, FakeApi, Flavor};
use harness::{run, shown, Daemon};
use serde_json::Value;

/// Per million tokens: the fake reports 11 tokens in and 3 out a call.
const PRICE: &str = "[models.prices]\n\"fake-model@gpu\" = { input = 1.0, output = 2.0 }\n";
const CALL_COST: f64 = (11.0 * 1.0 + 3.0 * 2.0) / 1e6;

fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn copy_skill(name: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/skills")
        .join(name);
    let to = to.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn usage_json(daemon: &Daemon) -> Value {
    let out = daemon.skillctl(&["usage", "--json"]);
    assert!(
        out.status.success(),
        "skillctl usage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    reply["usage"].clone()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_calls_are_recorded_priced_reported_and_kept_across_a_restart() {
    let gpu = FakeApi::start(Flavor::OpenAi, ApiScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let skills = dir.path().join("skills");
    copy_skill("translate", &skills);
    let config = write_config(
        dir.path(),
        "config.toml",
        &format!(
            "[models]\ndefault = \"fake-model@gpu\"\norder = [\"gpu\"]\n\
             [models.backends.gpu]\nkind = \"openai\"\nurl = \"{}\"\n{PRICE}\
             [skills]\ntrust = \"all\"\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n",
            gpu.url(),
            dir.path().join("user-skills")
        ),
    );
    let args = ["--config", config.to_str().unwrap()];
    let mut daemon = Daemon::start(&args);
    let mut client = daemon.client().await;

    // One-shot prompts carry no conversation, so the second is the same
    // request: answered from the response cache, recorded at no cost.
    for _ in 0..2 {
        let answer = run(&mut client, "%%prompt\nSay hello").await;
        assert_eq!(answer.status(), "ok", "{}", shown(&answer));
    }
    let skill = run(&mut client, "%%run translate language=French\nGood morning").await;
    assert_eq!(skill.status(), "ok", "{}", shown(&skill));
    assert_eq!(
        gpu.generations(),
        2,
        "the repeated prompt came from the cache"
    );

    let usage = run(&mut client, "%usage").await;
    assert_eq!(usage.status(), "ok", "{}", shown(&usage));
    let text = shown(&usage);
    assert!(text.contains("fake-model@gpu"), "{text}");
    assert!(
        text.contains("translate") && text.contains("(prompt cells)"),
        "{text}"
    );
    assert!(text.contains(&format!("{:.6}", 2.0 * CALL_COST)), "{text}");
    let html = usage
        .iopub
        .iter()
        .filter_map(|m| m.content["data"]["text/html"].as_str())
        .collect::<String>();
    assert!(html.contains("<td>translate</td>"), "{html}");

    let info = run(&mut client, "%model info").await;
    assert!(
        shown(&info).contains("Price: **1 in / 2 out** per million tokens"),
        "{}",
        shown(&info)
    );

    let u = usage_json(&daemon);
    assert_eq!(u["today_totals"]["calls"], 3);
    assert_eq!(u["today_totals"]["cached_calls"], 1);
    assert_eq!(u["today_totals"]["prompt_tokens"], 33);
    assert!(
        close(u["today_totals"]["cost"].as_f64().unwrap(), 2.0 * CALL_COST),
        "{u}"
    );
    let skill_row = u["by_skill"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "translate")
        .expect("translate in by_skill")
        .clone();
    assert_eq!(skill_row["calls"], 1);
    assert!(close(skill_row["cost"].as_f64().unwrap(), CALL_COST));
    assert_eq!(u["by_model"][0]["key"], "fake-model@gpu");

    // The ledger is plain JSON lines in the state directory, one per call,
    // naming the session and the skill.
    let ledger = daemon.dir.path().join("state/usage");
    let lines: Vec<Value> = std::fs::read_dir(&ledger)
        .unwrap()
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["session"].as_str().is_some_and(|s| !s.is_empty())));
    assert_eq!(
        lines.iter().filter(|l| l["skill"] == "translate").count(),
        1
    );
    assert!(lines.iter().all(|l| l["first_token_ms"].as_f64().is_some()));

    drop(client);
    daemon.kill();
    daemon.restart(&args);
    let u = usage_json(&daemon);
    assert_eq!(u["today_totals"]["calls"], 3, "kept across a restart: {u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_daily_budget_refuses_then_hands_the_call_to_the_default_model() {
    let gpu = FakeApi::start(Flavor::OpenAi, ApiScript::default()).await;
    let cheap = FakeApi::start(
        Flavor::OpenAi,
        ApiScript {
            pieces: vec!["from the local one".into()],
            ..ApiScript::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let backends = format!(
        "[models.backends.gpu]\nkind = \"openai\"\nurl = \"{}\"\n\
         [models.backends.cheap]\nkind = \"openai\"\nurl = \"{}\"\n\
         [models.cache]\nenabled = false\n{PRICE}",
        gpu.url(),
        cheap.url()
    );
    // One call (0.000017) uses up a daily budget of 0.00001.
    let refuse = write_config(
        dir.path(),
        "refuse.toml",
        &format!(
            "[models]\ndefault = \"fake-model@gpu\"\norder = [\"gpu\", \"cheap\"]\n{backends}\
             [models.budgets]\ndaily = 0.00001\non_exceeded = \"refuse\"\n"
        ),
    );
    let mut daemon = Daemon::start(&["--config", refuse.to_str().unwrap()]);
    let mut client = daemon.client().await;

    let first = run(&mut client, "Say hello").await;
    assert_eq!(first.status(), "ok", "within budget: {}", shown(&first));
    let second = run(&mut client, "Say hello again").await;
    assert_eq!(second.status(), "error");
    assert_eq!(second.reply.content["ename"], "BudgetExceededError");
    let why = second.reply.content["evalue"].as_str().unwrap_or_default();
    assert!(
        why.contains("daily budget (0.00001") && why.contains("fake-model@gpu"),
        "{why}"
    );
    assert_eq!(
        gpu.generations(),
        1,
        "the refused call never reached the server"
    );

    // The same day's spend, read back from the ledger by a new process:
    // now the unpriced default model answers, saying why.
    let local = write_config(
        dir.path(),
        "local.toml",
        &format!(
            "[models]\ndefault = \"fake-model@cheap\"\norder = [\"gpu\", \"cheap\"]\n{backends}\
             [models.budgets]\ndaily = 0.00001\n"
        ),
    );
    drop(client);
    daemon.kill();
    daemon.restart(&["--config", local.to_str().unwrap()]);
    let mut client = daemon.client().await;
    let chosen = run(&mut client, "%model use fake-model@gpu").await;
    assert_eq!(chosen.status(), "ok", "{}", shown(&chosen));
    let answer = run(&mut client, "Say hello once more").await;
    assert_eq!(answer.status(), "ok", "{}", shown(&answer));
    let text = shown(&answer);
    assert!(text.contains("from the local one"), "{text}");
    assert!(
        text.contains("daily budget")
            && text.contains("fake-model@cheap answered instead of fake-model@gpu"),
        "{text}"
    );
    assert_eq!(answer.reply.metadata["model"]["name"], "fake-model@cheap");
    assert_eq!(gpu.generations(), 1);
    assert_eq!(cheap.generations(), 1);
    let usage = run(&mut client, "%usage").await;
    assert!(shown(&usage).contains("used up"), "{}", shown(&usage));
}
