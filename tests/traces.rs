//! OpenTelemetry traces of a real daemon, received by a real OTLP/HTTP
//! receiver decoding them with the OpenTelemetry project's protobuf types:
//! a workflow's spans and their parents (request → cell → skill run →
//! phase → model call; a command skill's sandbox run), a W3C
//! `traceparent` in the request metadata as the parent, `msg_id` on log
//! lines; and a dead or hanging collector costing cells nothing, said
//! once in the log and shown in the status.

use std::path::Path;
use std::time::Duration;

use harness::otlp::OtlpReceiver;
use harness::{run, Daemon};
use serde_json::{json, Value};
use skillctl::{ExecuteOptions, Quiet, Target};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A workflow with two parallel phases and one after them, and a command
/// skill, in `dir/skills`.
fn write_skills(dir: &Path) {
    let skills = dir.join("skills");
    std::fs::create_dir_all(skills.join("tea")).expect("skills dir");
    std::fs::write(
        skills.join("tea/skill.yaml"),
        "name: tea\nversion: 1.0.0\ndescription: Weighs tea.\ntype: workflow\nmax_parallel: 2\n\
         phases:\n  - id: pros\n    template: \"Why drink {{ input }}?\"\n    max_tokens: 3\n\
         \x20 - id: cons\n    template: \"Why not drink {{ input }}?\"\n    max_tokens: 3\n\
         \x20 - id: verdict\n    depends_on: [pros, cons]\n    template: \"{{ phases.pros }} {{ phases.cons }}\"\n    max_tokens: 3\n\
         output: verdict\n",
    )
    .expect("workflow");
    std::fs::create_dir_all(skills.join("say")).expect("skills dir");
    std::fs::write(
        skills.join("say/skill.yaml"),
        "name: say\nversion: 1.0.0\ndescription: Echoes.\ntype: command\ncommand: /bin/echo\nargs: [\"{{ input }}\"]\n",
    )
    .expect("command skill");
}

/// A daemon exporting traces to `endpoint`, with the skills above and the
/// embedded default model.
fn daemon(dir: &Path, endpoint: &str, tracing_extra: &str) -> Daemon {
    write_skills(dir);
    let config = dir.join("traces.toml");
    std::fs::write(
        &config,
        format!(
            "[tracing]\notlp_endpoint = {endpoint:?}\n{tracing_extra}\n\
             [skills]\ntrust = \"all\"\ndirs = [{:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\n",
            dir.join("skills"),
            dir.join("user-skills"),
        ),
    )
    .expect("config");
    let model_dir = harness::default_model_dir();
    Daemon::start(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--model-dir",
        &model_dir,
    ])
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn by_attribute<'a>(spans: &'a [Value], name: &str, key: &str, value: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name && s["attributes"][key] == value)
        .unwrap_or_else(|| panic!("no {name} span with {key} = {value}: {spans:#?}"))
}

fn child_of(span: &Value, parent: &Value) {
    assert_eq!(
        (&span["parent_span_id"], &span["trace_id"]),
        (&parent["span_id"], &parent["trace_id"]),
        "{} should be a child of {}:\n{span:#}\n{parent:#}",
        span["name"],
        parent["name"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_run_exports_its_spans_under_the_callers_traceparent() {
    let receiver = OtlpReceiver::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    // Headers configured for the collector go with every export.
    let daemon = daemon(
        dir.path(),
        &receiver.endpoint(),
        "headers = { \"x-team\" = \"ml\" }",
    );
    let mut client = daemon.client().await;

    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "traceparent".into(),
        json!(format!("00-{TRACE_ID}-{CALLER_SPAN}-01")),
    );
    let options = ExecuteOptions {
        timeout: Duration::from_secs(120),
        metadata,
        ..ExecuteOptions::default()
    };
    let workflow = client
        .execute("%%run tea\ngreen tea", &options, &mut Quiet)
        .await
        .expect("the workflow cell");
    assert_eq!(workflow.status(), "ok", "{:?}", workflow.reply.content);
    let workflow_msg_id = workflow
        .reply
        .parent_header
        .msg_id()
        .expect("the reply's parent");
    let command = run(&mut client, "%%run say\nhello from a skill").await;
    assert_eq!(command.status(), "ok", "{:?}", command.reply.content);
    let denied = run(&mut client, "!cat /etc/shadow").await;
    assert_eq!(denied.status(), "error");

    let spans = receiver.wait_for(Duration::from_secs(30), |spans| {
        named(spans, "model_call").len() >= 3
            && named(spans, "sandbox_run").len() >= 2
            && spans
                .iter()
                .any(|s| s["name"] == "skill_run" && s["attributes"]["skill"] == "say")
    });

    // The request is the child of the caller's span, in the caller's trace.
    let request = by_attribute(&spans, "execute_request", "msg_id", &workflow_msg_id);
    assert_eq!(request["trace_id"], TRACE_ID, "{request:#}");
    assert_eq!(request["parent_span_id"], CALLER_SPAN, "{request:#}");
    assert_eq!(request["kind"], 2, "a server span: {request:#}");
    assert_eq!(
        request["attributes"]["session"],
        client.session(),
        "{request:#}"
    );
    assert_eq!(request["resource"]["service.name"], "skillkernel");
    assert_eq!(request["content_type"], "application/x-protobuf");
    assert_eq!(
        request["x_team"], "ml",
        "the configured header: {request:#}"
    );

    let cell = spans
        .iter()
        .find(|s| s["name"] == "cell" && s["parent_span_id"] == request["span_id"])
        .unwrap_or_else(|| panic!("no cell span under the request: {spans:#?}"));
    assert_eq!(cell["attributes"]["kind"], "cell_magic", "{cell:#}");
    let skill_run = by_attribute(&spans, "skill_run", "skill", "tea");
    child_of(skill_run, cell);
    assert_eq!(skill_run["attributes"]["kind"], "workflow");
    for phase_id in ["pros", "cons", "verdict"] {
        let phase = by_attribute(&spans, "phase", "phase", phase_id);
        child_of(phase, skill_run);
        let call = spans
            .iter()
            .find(|s| s["name"] == "model_call" && s["parent_span_id"] == phase["span_id"])
            .unwrap_or_else(|| panic!("no model call under phase {phase_id}: {spans:#?}"));
        assert_eq!(call["attributes"]["backend"], "candle", "{call:#}");
        assert!(
            call["attributes"]["completion_tokens"].as_i64() > Some(0),
            "{call:#}"
        );
        assert!(call["start"].as_u64() >= phase["start"].as_u64());
        assert!(call["end"].as_u64() <= phase["end"].as_u64());
    }

    // Without a traceparent a request starts its own trace.
    let command_run = by_attribute(&spans, "skill_run", "skill", "say");
    let sandbox = by_attribute(&spans, "sandbox_run", "source", "skill");
    child_of(sandbox, command_run);
    assert_eq!(sandbox["attributes"]["verdict"], "success", "{sandbox:#}");
    assert_eq!(sandbox["attributes"]["program"], "/bin/echo", "{sandbox:#}");
    assert_ne!(command_run["trace_id"], TRACE_ID);

    // A failure is marked on the spans it happened in (status 2: ERROR).
    let refused = by_attribute(&spans, "sandbox_run", "source", "cell");
    assert_eq!(refused["attributes"]["verdict"], "denied", "{refused:#}");
    assert_eq!(refused["status_code"], 2, "{refused:#}");
    assert_eq!(refused["status_message"], "denied", "{refused:#}");
    let failed_cell = spans
        .iter()
        .find(|s| s["name"] == "cell" && s["span_id"] == refused["parent_span_id"])
        .unwrap_or_else(|| panic!("no cell above the refused run: {spans:#?}"));
    assert_eq!(failed_cell["status_code"], 2, "{failed_cell:#}");
    assert_eq!(failed_cell["attributes"]["outcome"], "error");
    assert_eq!(
        sandbox["status_code"], 0,
        "a success has no status: {sandbox:#}"
    );

    // The status says what got out.
    let status = daemon.skillctl(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let traces = &status["telemetry"][0];
    assert_eq!(traces["name"], "traces", "{status:#}");
    assert!(traces["delivered"].as_u64() >= Some(10), "{status:#}");
    assert_eq!(traces["dropped"], 0, "{status:#}");
    assert!(traces.get("failing").is_none(), "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_written_while_handling_a_request_carry_its_msg_id() {
    let receiver = OtlpReceiver::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = daemon(dir.path(), &receiver.endpoint(), "");
    let mut client = daemon.client().await;
    // The kernel logs a warning while handling this one.
    let reply = harness::invalid_execute_request(&mut client).await;
    let msg_id = reply.parent_header.msg_id().expect("parent msg_id");
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("invalid execute_request"))
        .unwrap_or_else(|| panic!("no warning logged:\n{log}"));
    assert!(
        line.contains(&format!("msg_id={msg_id}")) && line.contains("msg_type=execute_request"),
        "{line}"
    );
    assert!(!line.contains("otel."), "{line}");
    // The span of that request went out too, marked as a server span.
    let spans = receiver.wait_for(Duration::from_secs(10), |spans| {
        spans.iter().any(|s| s["attributes"]["msg_id"] == msg_id)
    });
    assert!(
        spans.iter().all(|s| s["name"] != "request"),
        "named by type"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skillctl_exec_passes_traceparent_from_its_environment() {
    let receiver = OtlpReceiver::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = daemon(dir.path(), &receiver.endpoint(), "");
    let caller = "1111111111111111aaaaaaaaaaaaaaaa";
    let parent = "2222222222222222";
    let traceparent = format!("00-{caller}-{parent}-01");
    let out = daemon.skillctl_with_env(
        &["exec", "%set traced = 1"],
        &[("TRACEPARENT", traceparent.as_str())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Positive control: the same cell without it starts a trace of its own.
    let out = daemon.skillctl(&["exec", "%set untraced = 1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = receiver.wait_for(Duration::from_secs(10), |spans| {
        named(spans, "execute_request").len() >= 2
    });
    let requests = named(&spans, "execute_request");
    let joined: Vec<_> = requests
        .iter()
        .filter(|s| s["trace_id"] == caller)
        .collect();
    assert_eq!(joined.len(), 1, "{requests:#?}");
    assert_eq!(joined[0]["parent_span_id"], parent);
    assert!(
        requests
            .iter()
            .any(|s| s["trace_id"] != caller && s["parent_span_id"] == ""),
        "{requests:#?}"
    );
}

/// Empty cells: each is a request and a cell span, and costs nothing else.
async fn run_empty_cells(daemon: &Daemon, count: usize) {
    let mut client = daemon.client().await;
    for _ in 0..count {
        let ran = run(&mut client, "").await;
        assert_eq!(ran.status(), "ok");
    }
}

fn traces_status(daemon: &Daemon) -> Value {
    let out = daemon.skillctl(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    status["telemetry"][0].clone()
}

/// Waits until the status shows the outlet dropping.
fn wait_dropping(daemon: &Daemon) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let traces = traces_status(daemon);
        if traces["failing"].is_string() && traces["dropped"].as_u64() > Some(0) {
            return traces;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never shown dropping: {traces:#}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_drops_spans_says_so_once_and_cells_keep_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens there.
    let endpoint = format!("http://127.0.0.1:{}", harness::free_port());
    let daemon = daemon(dir.path(), &endpoint, "export_timeout_secs = 1");
    run_empty_cells(&daemon, 20).await;
    let traces = wait_dropping(&daemon);
    assert_eq!(traces["delivered"], 0, "{traces:#}");
    // More cells after the failure began: still served, not said again.
    run_empty_cells(&daemon, 20).await;
    std::thread::sleep(Duration::from_millis(2500));
    let log = daemon.log();
    assert_eq!(
        log.matches("cannot export traces").count(),
        1,
        "said once per failing stretch:\n{log}"
    );
    let shown = {
        let mut client = daemon.client().await;
        harness::shown(&run(&mut client, "%status").await)
    };
    assert!(
        shown.contains("| traces |") && shown.contains("dropping now"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_cells_nothing() {
    let receiver = OtlpReceiver::start(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = daemon(
        dir.path(),
        &receiver.endpoint(),
        "export_timeout_secs = 1\nmax_queue_spans = 8",
    );
    // Cells keep coming while the first export hangs: more spans than the
    // queue holds.
    let mut client = daemon.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        for _ in 0..20 {
            assert_eq!(run(&mut client, "").await.status(), "ok");
        }
        let traces = traces_status(&daemon);
        let log = daemon.log();
        // Said once, by whichever came first: the full queue or the
        // export that timed out.
        let said = log.contains("trace export queue is full")
            || (log.contains("cannot export traces") && log.contains("timed out"));
        if traces["dropped"].as_u64() > Some(8) && traces["failing"].is_string() && said {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never dropped and said so: {traces:#}\n{log}"
        );
    }
    // The kernel still answers on every channel.
    let info = client
        .request(
            Target::Control,
            "kernel_info_request",
            json!({}),
            Duration::from_secs(5),
        )
        .await
        .expect("kernel_info on control");
    assert_eq!(info.content["status"], "ok");
}
