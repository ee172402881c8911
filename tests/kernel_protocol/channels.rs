use std::time::{Duration, Instant};

use harness::{run, Daemon};
use serde_json::json;
use skillctl::{ExecuteOptions, OutputHandler, Quiet, Target};
use skillkernel_protocol::Message;

use super::T;

/// A front end that answers every `input_request` with one fixed reply
/// and remembers the prompts it was shown.
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
