//! The Jupyter protocol as real clients see it: one daemon process, real
//! ZeroMQ sockets, the `skillctl` client library.

use std::time::{Duration, Instant};

use harness::{run, Daemon};
use serde_json::json;
use skillctl::{ExecuteOptions, OutputHandler, Quiet, Target};
use skillkernel_protocol::{Header, Message};

const T: Duration = Duration::from_secs(20);

fn types(outcome: &skillctl::ExecuteOutcome) -> Vec<String> {
    outcome
        .iopub
        .iter()
        .map(|m| m.msg_type().to_owned())
        .collect()
}

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

struct Answer(&'static str, Vec<(String, bool)>);

impl OutputHandler for Answer {
    fn on_iopub(&mut self, _msg: &Message) {}
    fn on_input_request(&mut self, prompt: &str, password: bool) -> Option<String> {
        self.1.push((prompt.to_owned(), password));
        Some(self.0.to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_request_reaches_the_asking_client_and_stores_the_answer() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let mut answer = Answer("s3cret", Vec::new());
    let outcome = client
        .execute(
            "%input --password key Your key: ",
            &ExecuteOptions::default(),
            &mut answer,
        )
        .await
        .unwrap();
    assert_eq!(outcome.status(), "ok");
    assert_eq!(answer.1, vec![("Your key:".to_owned(), true)]);
    let got = run(&mut client, "%get key").await;
    assert_eq!(
        got.of_type("execute_result").next().unwrap().content["data"]["text/plain"],
        "s3cret"
    );

    let no_stdin = ExecuteOptions {
        allow_stdin: false,
        ..ExecuteOptions::default()
    };
    let refused = client
        .execute("%input k", &no_stdin, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(refused.reply.content["ename"], "StdinNotImplementedError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_request_stops_a_long_command_and_the_kernel_carries_on() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let interrupter = client.interrupter();
    let started = Instant::now();
    let interrupt = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        interrupter.interrupt().await.unwrap();
    });
    let outcome = run(&mut client, "!echo started; sleep 30").await;
    interrupt.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outcome.status(), "error");
    assert_eq!(outcome.reply.content["ename"], "KeyboardInterrupt");
    assert_eq!(
        outcome.stream_text("stdout"),
        "started\n",
        "output before the interrupt is kept"
    );
    let next = run(&mut client, "!echo after").await;
    assert_eq!(next.stream_text("stdout"), "after\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_and_control_answer_while_a_cell_runs() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let mut other = daemon.client().await;
    let cell = client.message(
        "execute_request",
        json!({"code": "!sleep 2", "silent": false, "store_history": true,
               "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
    );
    client.send(Target::Shell, &cell).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    other
        .heartbeat(Duration::from_secs(1))
        .await
        .expect("heartbeat during work");
    let info = other
        .request(
            Target::Control,
            "kernel_info_request",
            json!({}),
            Duration::from_secs(1),
        )
        .await
        .expect("control during work");
    assert_eq!(info.content["status"], "ok");
    assert!(t.elapsed() < Duration::from_secs(1));
    let outcome = client
        .collect(&cell.header.msg_id, T, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(outcome.status(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_output_streams_while_the_command_runs() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    struct Times(Vec<(Instant, String)>);
    impl OutputHandler for Times {
        fn on_iopub(&mut self, msg: &Message) {
            self.0.push((Instant::now(), msg.msg_type().to_owned()));
        }
    }
    let mut times = Times(Vec::new());
    let outcome = client
        .execute(
            "!echo first; sleep 1; echo second >&2",
            &ExecuteOptions::default(),
            &mut times,
        )
        .await
        .unwrap();
    assert_eq!(outcome.stream_text("stdout"), "first\n");
    assert_eq!(outcome.stream_text("stderr"), "second\n");
    let first_stream = times.0.iter().find(|(_, t)| t == "stream").unwrap().0;
    let idle = times.0.last().unwrap().0;
    assert!(
        idle.duration_since(first_stream) > Duration::from_millis(700),
        "first line arrived as it was written, not at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_overlong_commands_are_errors() {
    let daemon = Daemon::start(&["--command-timeout", "1"]);
    let mut client = daemon.client().await;
    let failed = run(&mut client, "!exit 3").await;
    assert_eq!(failed.reply.content["ename"], "CommandFailedError");
    assert!(failed.reply.content["evalue"]
        .as_str()
        .unwrap()
        .contains("3"));
    let t = Instant::now();
    let slow = run(&mut client, "!sleep 20").await;
    assert_eq!(slow.reply.content["ename"], "TimeoutError");
    assert!(t.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magics_produce_the_expected_mime_types() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let help = run(&mut client, "%help").await;
    let display = help.of_type("display_data").next().unwrap();
    assert!(display.content["data"]["text/markdown"]
        .as_str()
        .unwrap()
        .contains("%set"));

    let paged = run(&mut client, "%help history").await;
    let payload = &paged.reply.content["payload"][0];
    assert_eq!(payload["source"], "page");
    assert!(payload["data"]["text/plain"]
        .as_str()
        .unwrap()
        .contains("-g PATTERN"));

    run(&mut client, "%set items = [1, 2]").await;
    let got = run(&mut client, "%get items").await;
    let result = got.of_type("execute_result").next().unwrap();
    assert_eq!(result.content["data"]["application/json"], json!([1, 2]));

    let vars = run(&mut client, "%vars").await;
    let table = vars.of_type("display_data").next().unwrap();
    assert!(table.content["data"]["text/html"]
        .as_str()
        .unwrap()
        .contains("<table>"));
    assert!(table.content["data"]["text/plain"]
        .as_str()
        .unwrap()
        .contains("items"));

    let cleared = run(&mut client, "%clear").await;
    assert_eq!(cleared.of_type("clear_output").count(), 1);

    let body = run(&mut client, "%%set doc\nline one\nline two\n").await;
    assert_eq!(body.status(), "ok");
    let doc = run(&mut client, "%get doc").await;
    assert_eq!(
        doc.of_type("execute_result").next().unwrap().content["data"]["text/plain"],
        "line one\nline two\n"
    );

    let history = run(&mut client, "%history -n 2").await;
    assert!(history.stream_text("stdout").contains("%get doc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_without_a_model_says_how_to_get_one() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    let daemon = Daemon::start(&["--model-dir", dir]);
    let mut client = daemon.client().await;
    let outcome = run(&mut client, "What is the capital of France?").await;
    assert_eq!(outcome.reply.content["ename"], "ModelNotFoundError");
    let evalue = outcome.reply.content["evalue"].as_str().unwrap();
    assert!(evalue.contains("fetch-default-model"), "{evalue}");
    assert!(evalue.contains(dir), "names the model directory: {evalue}");
    let still = run(&mut client, "!echo still serving").await;
    assert_eq!(still.status(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_inspection_and_history_requests() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    run(&mut client, "%set naive = 1").await;
    run(&mut client, "%set nature = 2").await;

    let code = "%get na";
    let reply = client
        .request(
            Target::Shell,
            "complete_request",
            json!({"code": code, "cursor_pos": 7}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(reply.content["matches"], json!(["naive", "nature"]));
    assert_eq!(reply.content["cursor_start"], 5);
    assert_eq!(reply.content["cursor_end"], 7);

    // Cursor positions count code points, not bytes.
    let code = "%get naïve %cl";
    let reply = client
        .request(
            Target::Shell,
            "complete_request",
            json!({"code": code, "cursor_pos": 14}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        reply.content["matches"],
        json!([]),
        "magics only start a line"
    );

    let reply = client
        .request(
            Target::Shell,
            "inspect_request",
            json!({"code": "%history", "cursor_pos": 3, "detail_level": 0}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(reply.content["found"], true);
    assert!(reply.content["data"]["text/markdown"]
        .as_str()
        .unwrap()
        .contains("%history"));

    let reply = client
        .request(Target::Shell, "history_request",
            json!({"output": false, "raw": true, "hist_access_type": "search", "pattern": "%set na*", "unique": true}), T)
        .await
        .unwrap();
    assert_eq!(reply.content["history"].as_array().unwrap().len(), 2);

    let reply = client
        .request(Target::Shell, "history_request",
            json!({"output": false, "raw": true, "hist_access_type": "range", "session": 0, "start": 2, "stop": 3}), T)
        .await
        .unwrap();
    assert_eq!(reply.content["history"][0][2], "%set nature = 2");
}

/// `%history -g PATTERN` searches `*PATTERN*` and `-g` alone lists
/// everything, as IPython's does; a `history_request` search keeps the
/// pattern as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_g_matches_anywhere_while_a_search_request_takes_its_glob_as_given() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    run(&mut client, "%set a = \"the marker here\"").await;
    run(&mut client, "%set b = 2").await;

    let found = run(&mut client, "%history -g marker").await;
    assert_eq!(found.status(), "ok", "{:?}", found.reply.content);
    let text = found.stream_text("stdout");
    assert!(text.contains("1: %set a = \"the marker here\""), "{text}");
    assert!(!text.contains("%set b = 2"), "{text}");

    let all = run(&mut client, "%history -g").await;
    assert_eq!(all.status(), "ok", "{:?}", all.reply.content);
    let text = all.stream_text("stdout");
    for input in ["%set a = ", "%set b = 2", "%history -g marker"] {
        assert!(text.contains(input), "{input} listed: {text}");
    }

    let search = |pattern: &str| json!({"output": false, "raw": true, "hist_access_type": "search", "pattern": pattern});
    let reply = client
        .request(Target::Shell, "history_request", search("marker"), T)
        .await
        .unwrap();
    assert_eq!(reply.content["history"], json!([]), "no implicit `*`");
    let reply = client
        .request(Target::Shell, "history_request", search("%set a*"), T)
        .await
        .unwrap();
    assert_eq!(
        reply.content["history"],
        json!([[1, 1, "%set a = \"the marker here\""]])
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_asks_the_front_end_to_close() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let outcome = run(&mut client, "exit").await;
    assert_eq!(outcome.status(), "ok");
    assert_eq!(
        outcome.reply.content["payload"],
        json!([{"source": "ask_exit", "keepkernel": false}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_reply_without_parent_header_reaches_the_waiting_cell() {
    // jupyter_client's `input()` (so `jupyter console`) sends replies with
    // an empty parent header.
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let cell = client.message(
        "execute_request",
        json!({"code": "%input name", "silent": false, "store_history": true,
               "user_expressions": {}, "allow_stdin": true, "stop_on_error": true}),
    );
    client.send(Target::Shell, &cell).await.unwrap();
    let request = client.recv_stdin(T).await.unwrap();
    assert_eq!(request.msg_type(), "input_request");
    client.send_input_reply("Ada", None).await.unwrap();
    let outcome = client
        .collect(&cell.header.msg_id, T, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(outcome.status(), "ok");
    let got = run(&mut client, "%get name").await;
    assert_eq!(
        got.of_type("execute_result").next().unwrap().content["data"]["text/plain"],
        "Ada"
    );
}

/// Control answers `kernel_info_request`, `interrupt_request`,
/// `shutdown_request` and `status_request`; a request that does work is
/// refused there (it would bypass shell's order, operation guards and
/// shutdown refusal) with an error naming shell, and does not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_answers_its_requests_and_refuses_shell_work() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;

    // Positive control: what belongs on control is answered there.
    let status = client
        .request(Target::Control, "status_request", json!({}), T)
        .await
        .unwrap();
    assert_eq!(status.msg_type(), "status_reply");
    assert_eq!(status.content["status"], "ok", "{}", status.content);
    assert_eq!(status.content["kernel"]["pid"], daemon.pid());
    let info = client
        .request(Target::Control, "kernel_info_request", json!({}), T)
        .await
        .unwrap();
    assert_eq!(info.content["status"], "ok");
    let interrupt = client
        .request(Target::Control, "interrupt_request", json!({}), T)
        .await
        .unwrap();
    assert_eq!(interrupt.msg_type(), "interrupt_reply");
    assert_eq!(interrupt.content["status"], "ok");

    // Work on control: refused with the matching reply type.
    for (msg_type, content, reply_type) in [
        ("model_request", json!({"action": "list"}), "model_reply"),
        ("skill_request", json!({"action": "list"}), "skill_reply"),
        (
            "sandbox_request",
            json!({"action": "status"}),
            "sandbox_reply",
        ),
        (
            "complete_request",
            json!({"code": "%he", "cursor_pos": 3}),
            "complete_reply",
        ),
    ] {
        let reply = client
            .request(Target::Control, msg_type, content, T)
            .await
            .unwrap();
        let c = &reply.content;
        assert_eq!(reply.msg_type(), reply_type);
        assert_eq!(c["status"], "error", "{msg_type}: {c}");
        assert_eq!(c["ename"], "WrongChannel", "{msg_type}: {c}");
        let evalue = c["evalue"].as_str().unwrap();
        assert!(
            evalue.contains(msg_type) && evalue.contains("send it on shell"),
            "{evalue}"
        );
        assert!(c["traceback"].is_array());
    }
    let cell = json!({"code": "%set refused = 1", "silent": false, "store_history": true,
                      "user_expressions": {}, "allow_stdin": false, "stop_on_error": true});
    let refused = client
        .request(Target::Control, "execute_request", cell.clone(), T)
        .await
        .unwrap();
    assert_eq!(refused.msg_type(), "execute_reply");
    assert_eq!(refused.content["status"], "error");
    assert_eq!(refused.content["ename"], "WrongChannel");
    assert_eq!(refused.content["execution_count"], 0);

    // Nothing ran; the same cell on shell does.
    let after = client
        .request(Target::Control, "status_request", json!({}), T)
        .await
        .unwrap();
    assert_eq!(after.content["session"]["execution_count"], 0);
    assert_eq!(after.content["session"]["variables"], 0);
    let ran = client
        .request(Target::Shell, "execute_request", cell, T)
        .await
        .unwrap();
    assert_eq!(ran.content["status"], "ok", "{}", ran.content);
    let on_shell = client
        .request(
            Target::Shell,
            "sandbox_request",
            json!({"action": "status"}),
            T,
        )
        .await
        .unwrap();
    assert_ne!(on_shell.content["ename"], "WrongChannel");
    let after = client
        .request(Target::Control, "status_request", json!({}), T)
        .await
        .unwrap();
    assert_eq!(after.content["session"]["execution_count"], 1);
    assert_eq!(after.content["session"]["variables"], 1);
}
