//! Tool loops through the real daemon on the real default model: the
//! `word-count` Agent Skill's model calls its script (run in the sandbox,
//! in the kernel's working directory) and answers from what it printed;
//! each step is shown in the notebook as it happens.

use std::path::Path;

use harness::{run, Daemon, Launch};
use serde_json::Value;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_skill_on_the_real_model_runs_its_script_and_uses_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let skills = dir.path().join("skills");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills");
    copy_dir(&examples.join("word-count"), &skills.join("word-count"));
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(
        workspace.join("notes.txt"),
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda\nmu\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n",
            dir.path().join("user-skills")
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with(
        Launch {
            cwd: Some(workspace.clone()),
            ..Launch::default()
        },
        &[
            "--config",
            config.to_str().unwrap(),
            "--model-dir",
            &harness::default_model_dir(),
        ],
    );
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
    let tool_displays: Vec<&Value> = ran
        .iopub
        .iter()
        .filter(|m| {
            m.content["transient"]["display_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("tool-"))
        })
        .map(|m| &m.content)
        .collect();
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
    for d in &tool_displays {
        eprintln!("tool: {}", d["data"]["text/plain"]);
    }
    eprintln!("answer: {answer}");
}
