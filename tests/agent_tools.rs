//! Tool loops through the real daemon on the real default model: the
//! `word-count` Agent Skill's model calls its script (run in the sandbox,
//! in the kernel's working directory) and answers from what it printed;
//! each step is shown in the notebook as it happens.

use std::path::Path;

use harness::fake_llm_api::{ApiScript, FakeApi, Flavor};
use harness::fake_ollama::{ChatScript, Config, FakeOllama};
use harness::{copy_dir, run, skill_request, tool_displays, Daemon, Launch};
use serde_json::json;

/// A skills directory with `word-count`, a workspace with `notes.txt`
/// (12 words) and a config; `extra` is added to the daemon's arguments.
fn start(dir: &Path, extra: &[&str]) -> Daemon {
    let skills = dir.join("skills");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills");
    copy_dir(&examples.join("word-count"), &skills.join("word-count"));
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(
        workspace.join("notes.txt"),
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda\nmu\n",
    )
    .unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n",
            dir.join("user-skills")
        ),
    )
    .unwrap();
    let model_dir = harness::default_model_dir();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--model-dir",
        &model_dir,
    ];
    args.extend_from_slice(extra);
    Daemon::start_with(
        Launch {
            cwd: Some(workspace.clone()),
            ..Launch::default()
        },
        &args,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_skill_on_the_real_model_runs_its_script_and_uses_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &[]);
    let mut client = daemon.client().await;

    let ran = run(
        &mut client,
        "%%run word-count\nHow many words are in notes.txt?",
    )
    .await;
    assert_eq!(
        ran.status(),
        "ok",
        "{:?}\n{}",
        ran.reply.content,
        daemon.log()
    );
    // The step's display: shown when called, updated with the result.
    let tool_displays = tool_displays(&ran);
    for d in &tool_displays {
        eprintln!("tool: {}", d["data"]["text/plain"]);
    }
    assert!(tool_displays.len() >= 2, "{:?}", ran.iopub);
    let finished = tool_displays.last().unwrap()["data"]["text/markdown"]
        .as_str()
        .unwrap();
    assert!(finished.contains("count_words"), "{finished}");
    assert!(
        finished.contains("<details>"),
        "the full result collapsible: {finished}"
    );
    assert!(
        finished.contains("12 words"),
        "the script counted the workspace file: {finished}"
    );
    // The answer came after the tool, from a second model call.
    let phases = ran.reply.metadata["skill"]["phases"].as_array().unwrap();
    assert!(phases.len() >= 2, "{phases:?}");
    let answer: String = ran
        .iopub
        .iter()
        .filter(|m| {
            m.content["transient"]["display_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("skill-"))
        })
        .filter_map(|m| m.content["data"]["text/markdown"].as_str())
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        answer.contains("12"),
        "the model answered from the script's result: {answer}"
    );
    eprintln!("answer: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_calls_the_script_natively_and_gets_its_result_back() {
    let fake = FakeOllama::start(Config {
        chat: ChatScript {
            pieces: ["notes.txt has ", "12 words."].map(str::to_owned).to_vec(),
            tool_calls: vec![
                json!({"function": {"name": "count_words", "arguments": {"args": ["notes.txt"]}}}),
            ],
            ..ChatScript::default()
        },
        ..Config::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url();
    let daemon = start(dir.path(), &["--ollama-host", &url]);
    let mut client = daemon.client().await;
    assert_eq!(
        run(&mut client, "%model use llama3.2:latest")
            .await
            .status(),
        "ok"
    );
    let ran = run(
        &mut client,
        "%%run word-count\nHow many words are in notes.txt?",
    )
    .await;
    assert_eq!(ran.status(), "ok", "{:?}", ran.reply.content);
    let finished = tool_displays(&ran).last().unwrap()["data"]["text/plain"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(finished.contains("12 words"), "{finished}");
    let chats: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/chat")
        .collect();
    assert_eq!(chats.len(), 2);
    assert_eq!(chats[0].body["tools"][0]["function"]["name"], "count_words");
    let second = chats[1].body["messages"].as_array().unwrap();
    let n = second.len();
    assert_eq!(
        second[n - 2]["tool_calls"][0]["function"]["name"],
        "count_words"
    );
    assert_eq!(second[n - 1]["role"], "tool");
    assert_eq!(second[n - 1]["tool_name"], "count_words");
    assert!(second[n - 1]["content"]
        .as_str()
        .unwrap()
        .contains("12 words"));
    let meta = &ran.reply.metadata["skill"];
    assert_eq!(meta["phases"].as_array().unwrap().len(), 2, "{meta}");

    // skill_request: the calls come back in `tool_steps`.
    let reply = skill_request(
        &mut client,
        json!({"action": "run", "skill": "word-count", "input": "How long is notes.txt?"}),
    )
    .await;
    let steps = &reply.reply.content["tool_steps"];
    assert_eq!(steps[0]["tool"], "count_words", "{}", reply.reply.content);
    assert_eq!(steps[0]["ok"], true);
    assert!(steps[0]["result"].as_str().unwrap().contains("12 words"));
    assert_eq!(reply.reply.content["output"], "notes.txt has 12 words.");
}

/// A config with one remote backend `fake` of `kind`, the default model.
fn remote(dir: &Path, kind: &str, url: &str) -> Daemon {
    let config = dir.join("remote.toml");
    let skills = dir.join("skills");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills");
    copy_dir(&examples.join("word-count"), &skills.join("word-count"));
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("notes.txt"), "one two three four five\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[models]\ndefault = \"fake-model@fake\"\norder = [\"fake\"]\n\
             [models.backends.fake]\nkind = \"{kind}\"\nurl = \"{url}\"\n\
             [skills]\ntrust = \"all\"\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n",
            dir.join("user-skills")
        ),
    )
    .unwrap();
    Daemon::start_with(
        Launch {
            cwd: Some(workspace),
            ..Launch::default()
        },
        &["--config", config.to_str().unwrap()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_anthropic_tool_call_streams_with_split_arguments_run_the_script() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let fake = FakeApi::start(
            flavor,
            ApiScript {
                pieces: vec!["notes.txt has ".into(), "5 words.".into()],
                tool_calls: vec![("count_words".into(), json!({"args": ["notes.txt"]}))],
                ..ApiScript::default()
            },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let kind = if flavor == Flavor::OpenAi {
            "openai"
        } else {
            "anthropic"
        };
        let daemon = remote(dir.path(), kind, &fake.url());
        let mut client = daemon.client().await;
        let ran = run(
            &mut client,
            "%%run word-count\nHow many words are in notes.txt?",
        )
        .await;
        assert_eq!(
            ran.status(),
            "ok",
            "{kind}: {:?}\n{}",
            ran.reply.content,
            daemon.log()
        );
        let finished = tool_displays(&ran).last().unwrap()["data"]["text/plain"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(finished.contains("5 words"), "{kind}: {finished}");
        let chats: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        assert_eq!(chats.len(), 2, "{kind}");
        let first = &chats[0].body;
        let second = chats[1].body["messages"].as_array().unwrap();
        let n = second.len();
        if flavor == Flavor::OpenAi {
            assert_eq!(first["tools"][0]["function"]["name"], "count_words");
            assert_eq!(first["tool_choice"], "required", "the skill's tool_choice");
            assert_eq!(second[n - 2]["tool_calls"][0]["id"], "call_fake_0");
            assert_eq!(
                second[n - 2]["tool_calls"][0]["function"]["arguments"],
                r#"{"args":["notes.txt"]}"#
            );
            assert_eq!(second[n - 1]["role"], "tool");
            assert_eq!(second[n - 1]["tool_call_id"], "call_fake_0");
        } else {
            assert_eq!(first["tools"][0]["input_schema"]["type"], "object");
            assert_eq!(first["tool_choice"]["type"], "any");
            let calls = second[n - 2]["content"].as_array().unwrap();
            assert_eq!(calls[0]["text"], "Let me check.");
            assert_eq!(calls[1]["type"], "tool_use");
            assert_eq!(calls[1]["input"], json!({"args": ["notes.txt"]}));
            assert_eq!(second[n - 1]["content"][0]["tool_use_id"], "toolu_fake_0");
            assert!(second[n - 1]["content"][0]["content"]
                .as_str()
                .unwrap()
                .contains("5 words"));
        }
        let answer: String = ran
            .iopub
            .iter()
            .filter(|m| {
                m.content["transient"]["display_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("skill-"))
            })
            .filter_map(|m| m.content["data"]["text/markdown"].as_str())
            .last()
            .unwrap_or_default()
            .to_owned();
        assert!(answer.contains("5 words"), "{kind}: {answer}");
    }
}
