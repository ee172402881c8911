//! Session state across daemon restarts, through the real binary: what a
//! killed daemon's successor restores, what a client's restart resets,
//! and a state dir that cannot be written.

use std::time::{Duration, Instant};

use harness::{run, skill_request, Daemon, Launch};
use serde_json::{json, Value};
use skillctl::{ExecuteOptions, KernelClient, Quiet, Target};

const T: Duration = Duration::from_secs(20);

/// `%status` as text, run without touching history (so it changes nothing
/// that needs saving).
async fn status(client: &mut KernelClient) -> String {
    let options = ExecuteOptions {
        store_history: false,
        timeout: T,
        ..ExecuteOptions::default()
    };
    let outcome = client
        .execute("%status", &options, &mut Quiet)
        .await
        .unwrap();
    outcome
        .of_type("display_data")
        .filter_map(|m| m.content["data"]["text/markdown"].as_str())
        .collect()
}

/// Waits until every change is on disk, so a `kill -9` loses nothing that
/// the test then looks for.
async fn wait_saved(client: &mut KernelClient) {
    let deadline = Instant::now() + T;
    loop {
        let text = status(client).await;
        if text.contains("| session state | persisted |") {
            return;
        }
        assert!(Instant::now() < deadline, "changes never saved: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn history(client: &mut KernelClient, request: Value) -> Vec<Value> {
    let reply = client
        .request(Target::Shell, "history_request", request, T)
        .await
        .unwrap();
    assert_eq!(reply.content["status"], "ok", "{}", reply.content);
    reply.content["history"].as_array().unwrap().clone()
}

fn seq(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_is_continued_by_the_next_start() {
    let mut daemon = Daemon::start(&[]);
    {
        let mut client = daemon.client().await;
        assert_eq!(run(&mut client, "%set x = 3").await.status(), "ok");
        assert_eq!(run(&mut client, "!echo hi").await.status(), "ok");
        let large = run(&mut client, "!seq 1 5000").await;
        assert_eq!(large.reply.content["execution_count"], 3);
        wait_saved(&mut client).await;
    }
    daemon.kill();

    let started = Instant::now();
    daemon.restart(&[]);
    let mut client = daemon.client().await;
    println!("restart to ready: {:?}", started.elapsed());

    let get = run(&mut client, "%get x").await;
    assert_eq!(get.status(), "ok", "{}", get.reply.content);
    assert_eq!(
        get.reply.content["execution_count"], 4,
        "the count continues"
    );
    let result = get.of_type("execute_result").next().unwrap();
    assert_eq!(result.content["data"]["text/plain"], "3");

    // The earlier cells are history session 1; this start is session 2.
    let tail = history(
        &mut client,
        json!({"hist_access_type": "tail", "n": 10, "output": false, "raw": true}),
    )
    .await;
    assert_eq!(
        tail,
        vec![
            json!([1, 1, "%set x = 3"]),
            json!([1, 2, "!echo hi"]),
            json!([1, 3, "!seq 1 5000"]),
            json!([2, 4, "%get x"]),
        ]
    );

    // The large output comes back whole, from its artifact.
    let range = history(
        &mut client,
        json!({"hist_access_type": "range", "session": 1, "start": 2, "stop": 4,
               "output": true, "raw": true}),
    )
    .await;
    assert_eq!(range.len(), 2);
    assert_eq!(range[0], json!([1, 2, ["!echo hi", "hi\n"]]));
    assert_eq!(range[1][2][0], "!seq 1 5000");
    assert_eq!(range[1][2][1], seq(5000));
    // Session -1 is the previous start, as in IPython.
    let previous = history(
        &mut client,
        json!({"hist_access_type": "range", "session": -1, "start": 1, "stop": null,
               "output": false, "raw": true}),
    )
    .await;
    assert_eq!(previous.len(), 3);

    let shown = run(&mut client, "%history -g *seq* -o").await;
    let text = shown.stream_text("stdout");
    assert!(text.contains("1/3: !seq 1 5000"), "{text}");
    assert!(text.contains("→ 5000"), "whole output shown: {text}");

    let status = status(&mut client).await;
    assert!(
        status.contains("| persisted session | `kernel-test` |"),
        "{status}"
    );
    assert!(status.contains("| history entries | 5 |"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_restart_starts_the_session_fresh_but_keeps_its_history() {
    let mut daemon = Daemon::start(&[]);
    {
        let mut client = daemon.client().await;
        run(&mut client, "%set x = 3").await;
        let get = run(&mut client, "%get x").await;
        assert_eq!(get.reply.content["execution_count"], 2);
        let reply = client
            .request(
                Target::Control,
                "shutdown_request",
                json!({"restart": true}),
                T,
            )
            .await
            .unwrap();
        assert_eq!(reply.content["restart"], true);
    }
    daemon.restart(&[]);
    let mut client = daemon.client().await;

    let echo = run(&mut client, "!echo again").await;
    assert_eq!(echo.reply.content["execution_count"], 1, "count restarts");
    let get = run(&mut client, "%get x").await;
    assert_eq!(get.status(), "error");
    assert_eq!(
        get.reply.content["ename"], "NameError",
        "variables are gone"
    );
    assert_eq!(get.reply.content["execution_count"], 2);

    let tail = history(
        &mut client,
        json!({"hist_access_type": "tail", "n": 10, "output": false, "raw": true}),
    )
    .await;
    assert_eq!(
        tail,
        vec![
            json!([1, 1, "%set x = 3"]),
            json!([1, 2, "%get x"]),
            json!([2, 1, "!echo again"]),
            json!([2, 2, "%get x"]),
        ]
    );
    let shown = run(&mut client, "%history -g %set*").await;
    assert!(
        shown.stream_text("stdout").contains("1/1: %set x = 3"),
        "{}",
        shown.stream_text("stdout")
    );

    // A plain stop after the fresh start continues again.
    wait_saved(&mut client).await;
    drop(client);
    daemon.kill();
    daemon.restart(&[]);
    let mut client = daemon.client().await;
    let next = run(&mut client, "!echo on").await;
    assert_eq!(next.reply.content["execution_count"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_dir_leaves_the_kernel_serving_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the sessions directory should be (the tests
    // run as root, so permissions would not stop anything).
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("sessions"), "in the way").unwrap();
    let connection_file = dir.path().join("kernel-test.json");
    let daemon = Daemon::start_in(dir, connection_file, &[]);
    let mut client = daemon.client().await;

    assert_eq!(run(&mut client, "%set x = 3").await.status(), "ok");
    let get = run(&mut client, "%get x").await;
    assert_eq!(get.reply.content["execution_count"], 2);
    let status = status(&mut client).await;
    assert!(
        status.contains("| session state | in memory: cannot create the session directory"),
        "{status}"
    );
    assert!(status.contains("sessions/kernel-test"), "{status}");
    assert!(
        daemon.log().contains("the session continues in memory"),
        "{}",
        daemon.log()
    );
}

/// Memory holds only the newest 1000 history entries when the store holds
/// them all; requests reaching further back are answered from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_that_memory_let_go_of_is_answered_from_the_store() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    assert_eq!(run(&mut client, "%set marker = early").await.status(), "ok");
    for n in 2..=1200 {
        assert_eq!(
            run(&mut client, &format!("%set v = {n}")).await.status(),
            "ok"
        );
    }
    let shown = status(&mut client).await;
    assert!(
        shown.contains("| history entries | 1200 (newest 1000 in memory) |"),
        "{shown}"
    );

    let early = history(
        &mut client,
        json!({"hist_access_type": "range", "session": 0, "start": 1, "stop": 3,
               "output": false, "raw": true}),
    )
    .await;
    assert_eq!(
        early,
        vec![
            json!([1, 1, "%set marker = early"]),
            json!([1, 2, "%set v = 2"])
        ]
    );
    let found = history(
        &mut client,
        json!({"hist_access_type": "search", "pattern": "%set marker*", "n": 5,
               "output": false, "raw": true}),
    )
    .await;
    assert_eq!(found, vec![json!([1, 1, "%set marker = early"])]);
    let tail = history(
        &mut client,
        json!({"hist_access_type": "tail", "n": 1100, "output": false, "raw": true}),
    )
    .await;
    assert_eq!(
        (tail.len(), &tail[0][1], &tail[1099][1]),
        (1100, &json!(101), &json!(1200))
    );
    // Positive control: what memory holds is there the same way.
    let recent = history(
        &mut client,
        json!({"hist_access_type": "range", "session": 0, "start": 1199, "stop": null,
               "output": false, "raw": true}),
    )
    .await;
    assert_eq!(
        recent,
        vec![
            json!([1, 1199, "%set v = 1199"]),
            json!([1, 1200, "%set v = 1200"])
        ]
    );

    let shown = run(&mut client, "%history -g marker").await;
    assert_eq!(
        shown.stream_text("stdout"),
        "   1: %set marker = early\n1201: %history -g marker\n",
        "the first cell, from the store, and this one (as IPython shows it)"
    );
    let all = run(&mut client, "%history").await;
    let text = all.stream_text("stdout");
    assert_eq!(
        text.lines().count(),
        1202,
        "the whole session: {}",
        &text[..200]
    );
    assert!(
        text.starts_with("   1: %set marker = early\n"),
        "{}",
        &text[..200]
    );
}

/// How many turns conversation skill `name` holds, as `skill_request info`
/// reports them.
async fn skill_turns(client: &mut KernelClient, name: &str) -> u64 {
    let info = skill_request(client, json!({"action": "info", "skill": name})).await;
    info.reply.content["skill"]["conversation_turns"]
        .as_u64()
        .unwrap_or_else(|| panic!("no conversation_turns: {}", info.reply.content))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_skills_turns_survive_a_killed_daemon_until_reset() {
    let dir = tempfile::tempdir().unwrap();
    let skill = dir.path().join(".skillkernel/skills/chat");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(
        skill.join("skill.yaml"),
        "name: chat\nversion: 1.0.0\ndescription: A conversation.\ntype: conversation\n\
         system: You are terse.\ncontext:\n  include: [\"*.none\"]\ngeneration:\n  max_tokens: 6\n",
    )
    .unwrap();
    let connection_file = dir.path().join("kernel-test.json");
    let model_dir = harness::default_model_dir();
    let args = ["--model-dir", model_dir.as_str()];
    let mut daemon = Daemon::start_in_with(dir, connection_file, &args, Launch::in_own_dir());
    {
        let mut client = daemon.client().await;
        for question in ["Name a colour.", "Name another."] {
            let asked = run(&mut client, &format!("%%run chat\n{question}")).await;
            assert_eq!(asked.status(), "ok", "{}", asked.reply.content);
        }
        assert_eq!(skill_turns(&mut client, "chat").await, 4);
        wait_saved(&mut client).await;
    }
    daemon.kill();

    daemon.restart(&args);
    let mut client = daemon.client().await;
    assert_eq!(
        skill_turns(&mut client, "chat").await,
        4,
        "the turns came back after kill -9"
    );
    // The next question carries on from them.
    let asked = run(&mut client, "%%run chat\nAnd one more.").await;
    assert_eq!(asked.status(), "ok", "{}", asked.reply.content);
    assert_eq!(skill_turns(&mut client, "chat").await, 6);
    // `%skill reset` forgets them in the store too.
    assert_eq!(run(&mut client, "%skill reset chat").await.status(), "ok");
    assert_eq!(skill_turns(&mut client, "chat").await, 0);
    wait_saved(&mut client).await;
    drop(client);
    daemon.kill();
    daemon.restart(&args);
    let mut client = daemon.client().await;
    assert_eq!(
        skill_turns(&mut client, "chat").await,
        0,
        "reset survived too"
    );
}

/// Skill `name`'s `skill_request info`: its metrics and breaker.
async fn skill_info(client: &mut KernelClient, name: &str) -> Value {
    let info = skill_request(client, json!({"action": "info", "skill": name})).await;
    info.reply.content["skill"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skill_metrics_and_an_open_breaker_survive_a_killed_daemon_until_reset() {
    let dir = tempfile::tempdir().unwrap();
    let skills = dir.path().join(".skillkernel/skills");
    for (name, command) in [("steady", "true"), ("flaky", "false")] {
        std::fs::create_dir_all(skills.join(name)).unwrap();
        std::fs::write(
            skills.join(name).join("skill.yaml"),
            format!(
                "name: {name}\nversion: 1.0.0\ndescription: Runs {command}.\ntype: command\n\
                 command: \"{command}\"\nresilience:\n  circuit_threshold: 2\n  circuit_recovery_secs: 3600\n"
            ),
        )
        .unwrap();
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[skills]\ntrust = \"all\"\n").unwrap();
    let connection_file = dir.path().join("kernel-test.json");
    let args = ["--config", config.to_str().unwrap()];
    let mut daemon = Daemon::start_in_with(dir, connection_file, &args, Launch::in_own_dir());
    {
        let mut client = daemon.client().await;
        for _ in 0..3 {
            assert_eq!(run(&mut client, "%%run steady\n").await.status(), "ok");
        }
        for _ in 0..2 {
            assert_eq!(run(&mut client, "%%run flaky\n").await.status(), "error");
        }
        let refused = run(&mut client, "%%run flaky\n").await;
        assert_eq!(refused.reply.content["ename"], "CIRCUIT_BREAKER_OPEN");
        wait_saved(&mut client).await;
    }
    daemon.kill();

    daemon.restart(&args);
    let mut client = daemon.client().await;
    let steady = skill_info(&mut client, "steady").await;
    assert_eq!(steady["metrics"]["executions"], 3, "{steady}");
    assert_eq!(steady["metrics"]["execution"]["count"], 3, "{steady}");
    let flaky = skill_info(&mut client, "flaky").await;
    assert_eq!(flaky["breaker"]["state"], "open", "{flaky}");
    assert_eq!(flaky["breaker"]["consecutive_failures"], 2, "{flaky}");
    assert_eq!(
        flaky["metrics"]["errors"]["SKILL_EXECUTION_ERROR"], 2,
        "{flaky}"
    );
    // Still refused after kill -9: the breaker did not forget.
    let refused = run(&mut client, "%%run flaky\n").await;
    assert_eq!(
        refused.reply.content["ename"], "CIRCUIT_BREAKER_OPEN",
        "{}",
        refused.reply.content
    );
    // Metrics go on counting from where they were.
    assert_eq!(run(&mut client, "%%run steady\n").await.status(), "ok");
    assert_eq!(
        skill_info(&mut client, "steady").await["metrics"]["executions"],
        4
    );

    // `%skill reset` closes the breaker and zeroes the metrics, on disk too.
    assert_eq!(run(&mut client, "%skill reset flaky").await.status(), "ok");
    wait_saved(&mut client).await;
    drop(client);
    daemon.kill();
    daemon.restart(&args);
    let mut client = daemon.client().await;
    let flaky = skill_info(&mut client, "flaky").await;
    assert_eq!(flaky["breaker"]["state"], "closed", "{flaky}");
    assert!(flaky["metrics"].is_null(), "{flaky}");
}
