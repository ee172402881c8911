//! `skill test` through a real daemon on the embedded default model: a
//! prompt skill's and a workflow's (two parallel phases) own tests run
//! live, are recorded beside the skill, and replay to the same answers —
//! also on a daemon that has no model at all; an expectation that does not
//! hold fails the run (exit 1) and says what; a prompt changed since the
//! recording fails its replay with the remedy.

use std::path::{Path, PathBuf};

use harness::{run, shown, Daemon, Launch};
use serde_json::Value;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

const GREET: &str = "name: greet\nversion: 1.0.0\ndescription: Greets.\n\
template: \"Say hello to {{ input }}.\"\ngeneration:\n  max_tokens: 8\n\
tests:\n  - name: answers\n    input: Ana\n    expect:\n      regex: '\\S'\n      not_contains: ZZZ-never\n";

const DUO: &str = r#"name: duo
version: 1.0.0
description: Two views, then one line.
type: workflow
max_parallel: 2
phases:
  - id: up
    template: "One good thing about {{ input }}:"
    max_tokens: 6
  - id: down
    template: "One bad thing about {{ input }}:"
    max_tokens: 6
  - id: line
    depends_on: [up, down]
    template: "Good: {{ phases.up }} Bad: {{ phases.down }} Sum up:"
    max_tokens: 6
output: line
"#;

/// A project with `greet` (tests in its manifest) and `duo` (tests in a
/// tests.yaml beside it, one that cannot pass).
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let skills = root.join("project/.skillkernel/skills");
    write(&skills.join("greet/skill.yaml"), GREET);
    write(&skills.join("duo/skill.yaml"), DUO);
    write(
        &skills.join("duo/tests.yaml"),
        "- name: sums up\n  input: rain\n  expect:\n    regex: '\\S'\n\
         - name: impossible\n  input: rain\n  expect:\n    contains: ZZZ-never\n",
    );
    (dir, root)
}

fn start(root: &Path, model_dir: &str) -> Daemon {
    let config = root.join("config.toml");
    write(
        &config,
        &format!(
            "[skills]\nbuiltin = false\nuser_dir = {:?}\n",
            root.join("user-skills")
        ),
    );
    Daemon::start_with(
        Launch {
            cwd: Some(root.join("project")),
            ..Launch::default()
        },
        &[
            "--config",
            config.to_str().unwrap(),
            "--model-dir",
            model_dir,
        ],
    )
}

fn report(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let start = stdout
        .find('{')
        .unwrap_or_else(|| panic!("no JSON: {}", text(out)));
    serde_json::from_str(&stdout[start..]).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skills_tests_run_live_record_and_replay_the_same_answers_without_a_model() {
    let (_dir, root) = project();
    let daemon = start(&root, &harness::default_model_dir());
    let skills = root.join("project/.skillkernel/skills");

    // Live, on the default model.
    let out = daemon.skillctl(&["skill", "test", "greet"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("greet@1.0.0: 1 passed, 0 failed (live)"),
        "{}",
        text(&out)
    );

    // Recorded: the answers are kept beside each skill.
    let out = daemon.skillctl(&["skill", "test", "greet", "--record", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let recorded = report(&out);
    let greet_answer = recorded["tests"][0]["answer"].as_str().unwrap().to_owned();
    assert!(!greet_answer.trim().is_empty());
    let kept: Value = serde_json::from_str(
        &std::fs::read_to_string(skills.join("greet/skill-tests.recorded.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(kept["calls"].as_array().unwrap().len(), 1, "{kept}");

    // The workflow: one test fails, and says why; exit 1.
    let out = daemon.skillctl(&["skill", "test", "duo", "--record", "--json"]);
    assert!(!out.status.success(), "{}", text(&out));
    let duo = report(&out);
    assert_eq!(
        (duo["passed"].as_u64(), duo["failed"].as_u64()),
        (Some(1), Some(1)),
        "{duo}"
    );
    assert!(
        duo["tests"][1]["failures"][0]
            .as_str()
            .unwrap()
            .contains("does not contain \"ZZZ-never\""),
        "{duo}"
    );
    let duo_answer = duo["tests"][0]["answer"].as_str().unwrap().to_owned();
    let kept: Value = serde_json::from_str(
        &std::fs::read_to_string(skills.join("duo/skill-tests.recorded.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        kept["calls"].as_array().unwrap().len(),
        6,
        "three phases per test: {kept}"
    );
    drop(daemon);

    // Replayed on a daemon with no model at all: the same answers.
    let empty = root.join("no-models");
    std::fs::create_dir_all(&empty).unwrap();
    let daemon = start(&root, empty.to_str().unwrap());
    let live = daemon.skillctl(&["skill", "test", "greet"]);
    assert!(
        !live.status.success(),
        "live needs a model: {}",
        text(&live)
    );
    let out = daemon.skillctl(&["skill", "test", "greet", "--replay", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(report(&out)["tests"][0]["answer"], greet_answer.as_str());
    let out = daemon.skillctl(&["skill", "test", "duo", "--replay", "--json"]);
    let replayed = report(&out);
    assert_eq!(
        replayed["tests"][0]["answer"],
        duo_answer.as_str(),
        "{replayed}"
    );
    assert_eq!(replayed["tests"][0]["passed"], true, "{replayed}");

    // From a notebook, too.
    let mut client = daemon.client().await;
    let cell = run(&mut client, "%skill test greet --replay").await;
    assert_eq!(cell.status(), "ok", "{}", shown(&cell));
    assert!(
        shown(&cell).contains("1 passed, 0 failed (replayed)"),
        "{}",
        shown(&cell)
    );

    // The prompt changed since the recording: replay says to record again.
    write(
        &skills.join("greet/skill.yaml"),
        &GREET.replace("Say hello to", "Wave at"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = daemon.skillctl(&["skill", "test", "greet", "--replay"]);
        if !out.status.success() {
            assert!(text(&out).contains("--record again"), "{}", text(&out));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was not seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
