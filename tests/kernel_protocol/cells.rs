use std::time::{Duration, Instant};

use harness::{run, Daemon};
use serde_json::json;
use skillctl::{ExecuteOptions, OutputHandler};
use skillkernel_protocol::Message;

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
