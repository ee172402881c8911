//! Skills through the real daemon: discovery from a configured directory,
//! `%skill`, `%%run` on the real default model, `%%skill`, `skill_request`,
//! hot reload (watcher and SIGUSR1) and `skillctl skill`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{copy_dir, run, skill_request, Daemon};
use serde_json::json;
use skillctl::{ExecuteOutcome, KernelClient};

/// A skills directory with two of the examples and one broken skill, and a
/// config file pointing at it.
struct Setup {
    _dir: tempfile::TempDir,
    skills: PathBuf,
    config: PathBuf,
}

fn setup(watch: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let skills = dir.path().join("skills");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills");
    for name in ["translate", "pros-cons"] {
        copy_dir(&examples.join(name), &skills.join(name));
    }
    std::fs::create_dir_all(skills.join("broken")).unwrap();
    std::fs::write(
        skills.join("broken/skill.yaml"),
        "name: broken\nversion: 1.0.0\ndescription: Misspells a variable.\ntype: prompt\n\
         parameters:\n  - name: language\n    type: string\ntemplate: |\n  Say {{ input }} in {{ langauge }}\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = {watch}\n",
            skills,
            dir.path().join("user-skills")
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        skills,
        config,
    }
}

fn start(s: &Setup) -> Daemon {
    let models = harness::default_model_dir();
    Daemon::start(&[
        "--config",
        s.config.to_str().unwrap(),
        "--model-dir",
        &models,
    ])
}

fn text_output(outcome: &ExecuteOutcome) -> String {
    outcome
        .iopub
        .iter()
        .filter(|m| {
            matches!(
                m.msg_type(),
                "display_data" | "update_display_data" | "stream"
            )
        })
        .filter_map(|m| {
            m.content["data"]["text/plain"]
                .as_str()
                .or(m.content["text"].as_str())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last Markdown of the display with `display_id` prefix `prefix`.
fn display(outcome: &ExecuteOutcome, prefix: &str, mime: &str) -> String {
    outcome
        .iopub
        .iter()
        .filter(|m| matches!(m.msg_type(), "display_data" | "update_display_data"))
        .filter(|m| {
            m.content["transient"]["display_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .filter_map(|m| m.content["data"][mime].as_str())
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skills_are_listed_run_on_the_model_and_fail_with_codes_and_hints() {
    let s = setup(false);
    let daemon = start(&s);
    let mut client = daemon.client().await;

    let list = run(&mut client, "%skill list").await;
    assert_eq!(list.status(), "ok", "{:?}", list.reply.content);
    let shown = text_output(&list);
    for name in ["translate", "pros-cons"] {
        assert!(shown.contains(name), "{shown}");
    }
    // Discovery reads headers; the template is checked when the skill is
    // first used (lazy loading), and `%skill validate` checks it now.
    let all = run(&mut client, "%skill validate").await;
    assert_eq!(all.reply.content["ename"], "VALIDATION_ERROR");
    let evalue = all.reply.content["evalue"].as_str().unwrap();
    assert!(evalue.starts_with("1 of 3 skills do not load"), "{evalue}");
    assert!(evalue.contains("broken/skill.yaml:9"), "{evalue}");
    let info = skill_request(&mut client, json!({"action": "info", "skill": "translate"})).await;
    assert_eq!(
        info.reply.content["skill"]["state"], "Unloaded",
        "checking all leaves the valid ones unloaded"
    );
    let checked = run(&mut client, "%skill validate broken").await;
    assert_eq!(checked.reply.content["ename"], "VALIDATION_ERROR");
    let evalue = checked.reply.content["evalue"].as_str().unwrap();
    assert!(
        evalue.contains("broken/skill.yaml:9"),
        "file and line: {evalue}"
    );
    assert!(evalue.contains("langauge"), "what is wrong: {evalue}");
    let traceback = checked.reply.content["traceback"].to_string();
    assert!(traceback.contains("did you mean `language`"), "{traceback}");

    let ran = run(
        &mut client,
        "%%run translate language=German\nGood morning!",
    )
    .await;
    assert_eq!(ran.status(), "ok", "{:?}", ran.reply.content);
    let answer = display(&ran, "skill-", "text/markdown");
    assert!(!answer.trim().is_empty(), "an answer streamed");
    let meta = &ran.reply.metadata["skill"];
    assert_eq!(meta["skill"], "translate@1.0.0");
    assert!(
        meta["phases"][0]["model"]
            .as_str()
            .unwrap()
            .contains("smollm2"),
        "{meta}"
    );
    assert!(meta["completion_tokens"].as_u64().unwrap() > 0);
    let again = run(&mut client, "%%run translate language=German\nGood night!").await;
    assert_eq!(again.status(), "ok", "{:?}", again.reply.content);
    let metrics = skill_request(
        &mut client,
        json!({"action": "metrics", "skill": "translate"}),
    )
    .await;
    let m = &metrics.reply.content["metrics"]["skills"]["translate"];
    assert_eq!(m["executions"], 2, "{m}");
    assert_eq!(
        m["load"]["count"], 1,
        "only the first run loaded the skill: {m}"
    );

    let bad = run(&mut client, "%%run translate language=Klingon\nHello").await;
    assert_eq!(bad.reply.content["ename"], "VALIDATION_ERROR");
    let evalue = bad.reply.content["evalue"].as_str().unwrap();
    assert!(
        evalue.contains("Klingon") && evalue.contains("German"),
        "{evalue}"
    );

    let missing = run(&mut client, "%%run transalte\nHello").await;
    assert_eq!(missing.reply.content["ename"], "SKILL_NOT_FOUND");
    let traceback = missing.reply.content["traceback"].to_string();
    assert!(
        traceback.contains("translate"),
        "the hint names the close skill: {traceback}"
    );

    let broken = run(&mut client, "%%run broken\nHello").await;
    assert_eq!(broken.reply.content["ename"], "VALIDATION_ERROR");
    let listed = text_output(&run(&mut client, "%skill list").await);
    assert!(
        listed.contains("did not load") && listed.contains("broken/skill.yaml"),
        "once it failed, the list says so: {listed}"
    );

    // The daemon is still serving, and the good skills still run.
    let again = run(&mut client, "%skill info translate").await;
    assert_eq!(again.status(), "ok");
    let info = display(&again, "", "text/markdown");
    let info = if info.is_empty() {
        text_output(&again)
    } else {
        info
    };
    assert!(info.contains("language"), "parameters are shown: {info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_reports_each_phase_with_its_time_and_model() {
    let s = setup(false);
    let daemon = start(&s);
    let mut client = daemon.client().await;
    let ran = run(
        &mut client,
        "%%run pros-cons\nMove the team to a four-day week",
    )
    .await;
    assert_eq!(ran.status(), "ok", "{:?}", ran.reply.content);
    let progress = display(&ran, "skill-progress-", "text/plain");
    for phase in ["Pros", "Cons", "Verdict"] {
        assert!(
            progress.contains(&format!("✓ {phase}")),
            "{phase} finished: {progress}"
        );
    }
    assert!(progress.contains("smollm2"), "{progress}");
    let updates = ran
        .of_type("update_display_data")
        .filter(|m| {
            m.content["transient"]["display_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("skill-progress-"))
        })
        .count();
    assert!(
        updates >= 3,
        "progress is updated in place ({updates} updates)"
    );
    let phases = ran.reply.metadata["skill"]["phases"].as_array().unwrap();
    let ids: Vec<&str> = phases.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pros", "cons", "verdict"]);
    assert!(!display(&ran, "skill-", "text/markdown").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_defined_skill_runs_and_skill_request_serves_structured_data() {
    let s = setup(false);
    let daemon = start(&s);
    let mut client = daemon.client().await;
    let defined = run(
        &mut client,
        "%%skill\nname: shout\nversion: 0.2.0\ndescription: Repeats the input loudly.\n\
         type: prompt\ntemplate: \"Repeat in capitals: {{ input }}\"\ngeneration:\n  max_tokens: 16\n",
    )
    .await;
    assert_eq!(defined.status(), "ok", "{:?}", defined.reply.content);
    assert!(text_output(&defined).contains("shout@0.2.0"));

    let listed = skill_request(&mut client, json!({"action": "list"})).await;
    let c = &listed.reply.content;
    assert_eq!(c["status"], "ok", "{c}");
    let names: Vec<&str> = c["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"shout") && names.contains(&"translate"),
        "{names:?}"
    );
    let shout = c["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "shout")
        .unwrap();
    assert_eq!(shout["origin"], "cell");
    assert!(
        names.contains(&"broken"),
        "a broken body is found at first use"
    );

    let ran = skill_request(
        &mut client,
        json!({"action": "run", "skill": "shout", "input": "hello"}),
    )
    .await;
    let c = &ran.reply.content;
    assert_eq!(c["status"], "ok", "{c}");
    assert!(!c["output"].as_str().unwrap().is_empty());
    assert_eq!(c["run"]["skill"], "shout@0.2.0");
    assert!(
        ran.of_type("display_data").next().is_some(),
        "the answer streams on IOPub under the request"
    );

    let metrics = skill_request(
        &mut client,
        json!({"action": "metrics", "format": "prometheus"}),
    )
    .await;
    let text = metrics.reply.content["prometheus"].as_str().unwrap();
    assert!(text.contains("# TYPE"), "{text}");
    assert!(text.contains("skill=\"shout\""), "{text}");

    let invalid = skill_request(
        &mut client,
        json!({"action": "validate", "path": s.skills.join("broken/skill.yaml")}),
    )
    .await;
    let c = &invalid.reply.content;
    assert_eq!(c["valid"], false, "{c}");
    assert_eq!(c["errors"][0]["line"], 9, "{c}");

    // Disabled: listed, not runnable; enabled again: runs.
    let disabled = run(&mut client, "%skill disable translate").await;
    assert_eq!(disabled.status(), "ok", "{:?}", disabled.reply.content);
    assert!(text_output(&disabled).contains("disabled: translate@1.0.0"));
    let refused = run(&mut client, "%%run translate\nHello").await;
    assert_eq!(refused.reply.content["ename"], "SKILL_NOT_FOUND");
    let listed = text_output(&run(&mut client, "%skill list").await);
    assert!(listed.contains("disabled"), "{listed}");
    run(&mut client, "%skill enable translate").await;
    let back = run(&mut client, "%%run translate\nHello").await;
    assert_eq!(back.status(), "ok", "{:?}", back.reply.content);
    let unloaded = run(&mut client, "%skill unload translate").await;
    assert!(text_output(&unloaded).contains("unloaded: translate@1.0.0"));
    let info = skill_request(&mut client, json!({"action": "info", "skill": "translate"})).await;
    assert_eq!(
        info.reply.content["skill"]["state"], "Unloaded",
        "{}",
        info.reply.content
    );

    let unknown = skill_request(&mut client, json!({"action": "fly"})).await;
    assert_eq!(unknown.reply.content["status"], "error");
    assert_eq!(unknown.reply.content["ename"], "UsageError");
}

fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

async fn description(client: &mut KernelClient, name: &str) -> String {
    let info = skill_request(client, json!({"action": "info", "skill": name})).await;
    info.reply.content["skill"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_skill_file_is_reloaded_and_sigusr1_rescans() {
    let s = setup(true);
    let daemon = start(&s);
    let mut client = daemon.client().await;
    let manifest = s.skills.join("translate/skill.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "description: Translates a short text into another language.",
            "description: Translates, edited while running.",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if description(&mut client, "translate").await == "Translates, edited while running." {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher did not pick up the edit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A skill added to the directory of a daemon that does not watch it
    // appears on SIGUSR1.
    drop(client);
    drop(daemon);
    let s = setup(false);
    let daemon = start(&s);
    let mut client = daemon.client().await;
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills/summarize"),
        &s.skills.join("summarize"),
    );
    daemon.signal(nix::sys::signal::Signal::SIGUSR1);
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .log()
            .contains("reload: skills re-read")),
        "{}",
        daemon.log()
    );
    assert!(description(&mut client, "summarize")
        .await
        .starts_with("Summarizes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skillctl_skill_lists_and_runs() {
    let s = setup(false);
    let daemon = start(&s);
    let listed = daemon.skillctl(&["skill", "list"]);
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{out}");
    assert!(
        out.contains("translate") && out.contains("pros-cons"),
        "{out}"
    );
    let checked = daemon.skillctl(&[
        "skill",
        "validate",
        s.skills.join("broken").to_str().unwrap(),
    ]);
    assert_eq!(
        checked.status.code(),
        Some(1),
        "an invalid skill fails the command"
    );
    let err = String::from_utf8_lossy(&checked.stderr);
    assert!(
        err.contains("broken/skill.yaml:9"),
        "file and line on stderr: {err}"
    );

    let ran = daemon.skillctl(&[
        "skill",
        "run",
        "translate",
        "language=French",
        "--input",
        "Thank you very much.",
    ]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(!String::from_utf8_lossy(&ran.stdout).trim().is_empty());

    let refused = daemon.skillctl(&["skill", "run", "nosuch"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SKILL_NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_skill_runs_on_the_default_model() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{examples:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n",
            dir.path().join("user-skills")
        ),
    )
    .unwrap();
    let models = harness::default_model_dir();
    let daemon = Daemon::start(&["--config", config.to_str().unwrap(), "--model-dir", &models]);
    let mut client = daemon.client().await;
    let diff = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1 +1 @@\n-fn add(a: i32) -> i32 { a }\n+fn add(a: i32, b: i32) -> i32 { a + b }\n";
    let runs = [
        (
            "summarize",
            json!({}),
            "Rust is a systems language. It is fast. It prevents memory bugs at compile time.",
        ),
        ("translate", json!({"language": "Spanish"}), "Good night."),
        ("commit-message", json!({}), diff),
        ("code-review", json!({}), "Is the package name clear?"),
        ("pros-cons", json!({}), "Adopt a four-day week"),
        (
            "style-guide",
            json!({}),
            "Utilizing the aforementioned methodology, the implementation was effectuated.",
        ),
        (
            "headline",
            json!({}),
            "The city opened a new library with ten thousand books.",
        ),
        (
            "explain-code",
            json!({}),
            "fn square(x: u32) -> u32 { x * x }",
        ),
    ];
    for (name, args, input) in runs {
        let ran = skill_request(
            &mut client,
            json!({"action": "run", "skill": name, "args": args, "input": input}),
        )
        .await;
        let c = &ran.reply.content;
        assert_eq!(c["status"], "ok", "{name}: {c}");
        assert!(
            !c["output"].as_str().unwrap_or_default().trim().is_empty(),
            "{name} answered: {c}"
        );
    }
}
