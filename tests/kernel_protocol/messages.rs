use std::time::{Duration, Instant};

use harness::{run, Daemon};
use serde_json::json;
use skillctl::{ExecuteOptions, Quiet, Target};
use skillkernel_protocol::{Header, Message};

use super::{types, T};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_info_is_answered_on_shell_and_control() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    for target in [Target::Shell, Target::Control] {
        let reply = client
            .request(target, "kernel_info_request", json!({}), T)
            .await
            .unwrap();
        let c = &reply.content;
        assert_eq!(reply.msg_type(), "kernel_info_reply");
        assert_eq!(c["status"], "ok");
        assert_eq!(c["implementation"], "skillkernel");
        assert_eq!(c["language_info"]["name"], "skill");
        assert_eq!(c["language_info"]["file_extension"], ".skill");
        assert!(c["protocol_version"].as_str().unwrap().starts_with("5."));
        assert!(c["banner"].as_str().unwrap().contains("%help"));
        assert!(!c["help_links"].as_array().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_wraps_output_in_busy_and_idle_with_the_request_as_parent() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let outcome = run(&mut client, "!echo hi").await;
    assert_eq!(outcome.status(), "ok");
    assert_eq!(
        types(&outcome),
        ["status", "execute_input", "stream", "status"],
        "busy, input, output, idle"
    );
    assert_eq!(outcome.iopub[0].content["execution_state"], "busy");
    assert_eq!(outcome.iopub[3].content["execution_state"], "idle");
    assert_eq!(outcome.stream_text("stdout"), "hi\n");
    let request_id = outcome.reply.parent_header.msg_id().unwrap();
    for m in &outcome.iopub {
        assert_eq!(m.parent_header.msg_id().unwrap(), request_id);
        assert_eq!(
            m.header.session, outcome.reply.header.session,
            "one kernel session"
        );
        let date = &m.header.date;
        assert!(date.ends_with('Z') && date.len() == 27, "{date}");
    }
    let ids: std::collections::HashSet<_> =
        outcome.iopub.iter().map(|m| &m.header.msg_id).collect();
    assert_eq!(ids.len(), outcome.iopub.len(), "fresh msg_id per message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_header_is_an_exact_copy_of_the_request_header() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let mut header = Header::new("kernel_info_request", client.session(), "tester");
    header
        .extra
        .insert("x-custom-key".into(), json!({"kept": [1, 2, 3]}));
    let request = Message::new(header.clone(), json!({}));
    client.send(Target::Shell, &request).await.unwrap();
    let reply = client.recv(Target::Shell, T).await.unwrap();
    let sent = serde_json::to_vec(&header).unwrap();
    assert_eq!(reply.parent_header.as_bytes().as_ref(), sent.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_count_counts_only_stored_cells_and_silent_publishes_nothing() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let first = run(&mut client, "%set a = 1").await;
    assert_eq!(first.reply.content["execution_count"], 1);
    let input = first.of_type("execute_input").next().unwrap();
    assert_eq!(input.content["execution_count"], 1);

    let unstored = ExecuteOptions {
        store_history: false,
        ..ExecuteOptions::default()
    };
    let outcome = client
        .execute("%get a", &unstored, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(outcome.reply.content["execution_count"], 1, "not counted");
    assert_eq!(outcome.of_type("execute_result").count(), 1);

    let silent = ExecuteOptions {
        silent: true,
        ..ExecuteOptions::default()
    };
    let outcome = client
        .execute("!echo quiet", &silent, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(outcome.status(), "ok");
    assert_eq!(types(&outcome), ["status", "status"], "only busy and idle");

    let third = run(&mut client, "%get a").await;
    assert_eq!(third.reply.content["execution_count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_ename_evalue_traceback_in_iopub_and_reply() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let outcome = run(&mut client, "%get missing").await;
    assert_eq!(outcome.status(), "error");
    let reply = &outcome.reply.content;
    assert_eq!(reply["ename"], "NameError");
    assert!(reply["evalue"].as_str().unwrap().contains("missing"));
    assert!(reply["traceback"].as_array().is_some());
    let error = outcome.of_type("error").next().expect("IOPub error");
    assert_eq!(error.content["ename"], reply["ename"]);
    assert_eq!(error.content["evalue"], reply["evalue"]);
    assert!(reply["user_expressions"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_error_aborts_queued_executes() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let session = client.session().to_owned();
    let execute = |code: &str, stop_on_error: bool| {
        Message::new(
            Header::new("execute_request", &session, "tester"),
            json!({"code": code, "silent": false, "store_history": true,
                   "user_expressions": {}, "allow_stdin": false, "stop_on_error": stop_on_error}),
        )
    };
    let failing = execute("%get nope", true);
    let queued_a = execute("%set queued = 1", true);
    let queued_b = execute("!echo never", true);
    for m in [&failing, &queued_a, &queued_b] {
        client.send(Target::Shell, m).await.unwrap();
    }
    let mut statuses = std::collections::HashMap::new();
    while statuses.len() < 3 {
        let reply = client.recv(Target::Shell, T).await.unwrap();
        statuses.insert(
            reply.parent_header.msg_id().unwrap(),
            reply.content["status"].as_str().unwrap().to_owned(),
        );
    }
    assert_eq!(statuses[&failing.header.msg_id], "error");
    assert_eq!(statuses[&queued_a.header.msg_id], "aborted");
    assert_eq!(statuses[&queued_b.header.msg_id], "aborted");
    // The kernel serves normally afterwards; the aborted cell never ran.
    let after = run(&mut client, "%get queued").await;
    assert_eq!(after.status(), "error");

    // Without stop_on_error the queue runs on.
    let failing = execute("%get nope", false);
    let next = execute("%set ran = 1", false);
    client.send(Target::Shell, &failing).await.unwrap();
    client.send(Target::Shell, &next).await.unwrap();
    let mut seen = 0;
    while seen < 2 {
        let reply = client.recv(Target::Shell, T).await.unwrap();
        if reply.parent_header.msg_id().unwrap() == next.header.msg_id {
            assert_eq!(reply.content["status"], "ok");
        }
        seen += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_expressions_are_always_an_object() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    run(&mut client, "%set x = 42").await;
    let mut options = ExecuteOptions::default();
    options.user_expressions.insert("good".into(), json!("x"));
    options.user_expressions.insert("bad".into(), json!("nope"));
    let outcome = client.execute("", &options, &mut Quiet).await.unwrap();
    let ue = &outcome.reply.content["user_expressions"];
    assert_eq!(ue["good"]["status"], "ok");
    assert_eq!(ue["good"]["data"]["text/plain"], "42");
    assert_eq!(ue["bad"]["status"], "error");
    assert_eq!(ue["bad"]["ename"], "NameError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comms_to_unknown_targets_are_closed_and_unknown_requests_get_errors() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let info = client
        .request(Target::Shell, "comm_info_request", json!({}), T)
        .await
        .unwrap();
    assert_eq!(info.content["comms"], json!({}));

    let open = client.message(
        "comm_open",
        json!({"comm_id": "c1", "target_name": "jupyter.widget", "data": {}}),
    );
    // comm_open has no reply; the answer is a comm_close on IOPub.
    client.send(Target::Shell, &open).await.unwrap();
    let mut closed = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !closed {
        if let Ok(m) = client.recv_iopub(Duration::from_millis(200)).await {
            closed = m.msg_type() == "comm_close" && m.content["comm_id"] == "c1";
        }
    }
    assert!(closed, "comm_close published for the unknown target");

    let reply = client
        .request(Target::Shell, "debug_request", json!({}), T)
        .await
        .unwrap();
    assert_eq!(reply.msg_type(), "debug_reply");
    assert_eq!(reply.content["status"], "error");

    let after = run(&mut client, "!echo still here").await;
    assert_eq!(after.stream_text("stdout"), "still here\n");
}
