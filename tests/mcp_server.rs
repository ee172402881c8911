//! The daemon as an MCP server, driven by the official MCP Python SDK over
//! both transports: Streamable HTTP with a bearer token, and stdio through
//! `skillctl mcp` (bridged to the daemon over the wire protocol).
//!
//! The skills' model is an OpenAI-compatible fake whose requests the tests
//! read back (to see which conversation each session sent), except where
//! a test says it runs the real default model.

use std::path::{Path, PathBuf};

use harness::fake_llm_api::{ApiScript, FakeApi, Flavor};
use harness::mcp::{http, sdk_client};
use harness::{bin, copy_dir, free_port, run, Daemon, Launch};
use serde_json::{json, Value};

/// Skills for the tests: a command skill (`say`), a slow one (`wait`), a
/// conversation (`chat`), a prompt with a parameter (`headline`), a typed
/// one (`extract-person`) and an Agent Skill with files (`word-count`).
fn write_skills(dir: &Path) -> PathBuf {
    let skills = dir.join("skills");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills");
    for name in ["headline", "extract-person", "word-count"] {
        copy_dir(&examples.join(name), &skills.join(name));
    }
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(skills.join(name)).unwrap();
        std::fs::write(skills.join(name).join("skill.yaml"), text).unwrap();
    };
    write(
        "say",
        "name: say\nversion: 1.0.0\ndescription: Echoes its input.\ntype: command\ncommand: /bin/echo\nargs: [\"{{ input }}\"]\n",
    );
    write(
        "wait",
        "name: wait\nversion: 1.0.0\ndescription: Waits half a minute.\ntype: command\ncommand: /bin/sleep\nargs: [\"30\"]\n",
    );
    write(
        "chat",
        "name: chat\nversion: 1.0.0\ndescription: A conversation.\ntype: conversation\nsystem: You are terse.\ncontext:\n  include: [\"*.none\"]\n",
    );
    skills
}

struct Setup {
    daemon: Daemon,
    api: FakeApi,
    port: u16,
    token: String,
    _dir: tempfile::TempDir,
}

/// A daemon with the skills above on the fake API, serving MCP over
/// HTTP on a free port with the extra tools turned on.
async fn start(script: ApiScript) -> Setup {
    let api = FakeApi::start(Flavor::OpenAi, script).await;
    let dir = tempfile::tempdir().unwrap();
    let skills = write_skills(dir.path());
    let port = free_port();
    let token_file = dir.path().join("secret/mcp-token");
    let config = dir.path().join("skillkernel.toml");
    std::fs::write(
        &config,
        format!(
            "[models]\ndefault = \"fake-model@gpu\"\norder = [\"gpu\"]\n\
             [models.backends.gpu]\nkind = \"openai\"\nurl = \"{}\"\n\
             [skills]\ntrust = \"all\"\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n\
             [mcp.server]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {token_file:?}\n\
             run_command = true\nlist_models = true\n",
            api.url(),
            dir.path().join("user-skills"),
        ),
    )
    .unwrap();
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let daemon = Daemon::start_with(
        Launch {
            cwd: Some(workspace),
            ..Launch::default()
        },
        &["--config", config.to_str().unwrap()],
    );
    // The endpoint starts once the kernel serves: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the MCP endpoint did not start:\n{}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(&token_file)
        .unwrap_or_else(|e| panic!("no token file ({e}):\n{}", daemon.log()))
        .trim()
        .to_owned();
    Setup {
        daemon,
        api,
        port,
        token,
        _dir: dir,
    }
}

fn over_http(s: &Setup) -> Value {
    json!({"http": format!("http://127.0.0.1:{}/mcp", s.port), "token": s.token})
}

fn over_stdio(s: &Setup) -> Value {
    json!({"stdio": [
        bin("skillctl").to_str().unwrap(),
        "--existing",
        s.daemon.connection_file.to_str().unwrap(),
        "mcp"
    ]})
}

/// The results of `ops`, asserting the connection worked.
fn results(s: &Setup, transport: &Value, ops: Value) -> Vec<Value> {
    let out = sdk_client(transport, &ops);
    assert!(
        out.get("error").is_none(),
        "{out}\n--- daemon log ---\n{}",
        s.daemon.log()
    );
    out["results"].as_array().cloned().unwrap_or_default()
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// The tools, prompts and resources, and calls of each kind of skill,
/// through `transport`.
fn lists_and_calls(s: &Setup, transport: &Value) {
    let r = results(
        s,
        transport,
        json!([
            {"op": "list_tools"},
            {"op": "list_prompts"},
            {"op": "get_prompt", "name": "headline", "arguments": {"input": "Cats nap all day.", "words": "5"}},
            {"op": "list_resources"},
            {"op": "read_resource", "uri": "skill://word-count/scripts/count_words.py"},
            {"op": "call", "name": "say", "arguments": {"input": "hello from MCP"}},
            {"op": "call", "name": "headline", "arguments": {"input": "Cats nap all day."}, "progress": true},
            {"op": "call", "name": "headline", "arguments": {"input": "x", "words": "many"}},
            {"op": "call", "name": "skillkernel_run_command", "arguments": {"command": "echo sandboxed; pwd"}},
            {"op": "call", "name": "skillkernel_list_models", "arguments": {}},
        ]),
    );
    let tools = &r[0];
    assert_eq!(
        names(tools),
        [
            "chat",
            "extract-person",
            "headline",
            "say",
            "skillkernel_list_models",
            "skillkernel_run_command",
            "wait",
            "word-count"
        ]
    );
    let headline = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "headline")
        .unwrap();
    assert_eq!(
        headline["inputSchema"]["properties"]["words"]["type"],
        "number"
    );
    assert!(headline["outputSchema"].is_null(), "{headline}");
    let typed = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "extract-person")
        .unwrap();
    assert_eq!(
        typed["outputSchema"]["required"],
        json!(["name", "age", "city"])
    );

    // Prompts: the skills that make one model call.
    assert_eq!(
        names(&r[1]),
        ["chat", "extract-person", "headline", "word-count"]
    );
    let prompt = r[2]["messages"].to_string();
    assert!(
        prompt.contains("at most 5 words") && prompt.contains("Cats nap all day."),
        "{prompt}"
    );

    // Resources: the Agent Skill's files, readable.
    let uris: Vec<&str> = r[3]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert!(uris.contains(&"skill://word-count/SKILL.md"), "{uris:?}");
    assert!(
        uris.contains(&"skill://word-count/scripts/count_words.py"),
        "{uris:?}"
    );
    let script = r[4]["contents"][0]["text"].as_str().unwrap_or_default();
    assert!(script.contains("def "), "{}", r[4]);

    // A command skill, in the sandbox.
    assert_eq!(r[5]["result"]["isError"], json!(false), "{}", r[5]);
    assert_eq!(text_of(&r[5]["result"]).trim(), "hello from MCP");

    // A prompt skill on the model, with progress while it streams.
    assert_eq!(text_of(&r[6]["result"]), "Hello, wörld — done.", "{}", r[6]);
    let progress = r[6]["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "no progress: {}", r[6]);
    let streamed: String = progress
        .iter()
        .filter_map(|p| p["message"].as_str())
        .filter(|m| !m.starts_with('▶') && !m.starts_with('✓'))
        .collect();
    assert_eq!(streamed, "Hello, wörld — done.", "{progress:?}");

    // A wrong parameter is a tool error the model can read.
    assert_eq!(r[7]["result"]["isError"], json!(true), "{}", r[7]);
    assert!(
        text_of(&r[7]["result"]).contains("VALIDATION_ERROR"),
        "{}",
        r[7]
    );

    // The extra tools [mcp.server] turned on.
    let ran = text_of(&r[8]["result"]);
    assert!(
        ran.starts_with("sandboxed\n") && ran.contains("workspace"),
        "{ran}"
    );
    assert_eq!(
        r[9]["result"]["structuredContent"]["models"][0]["name"], "fake-model",
        "{}",
        r[9]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_over_http_lists_the_skills_and_runs_them() {
    let s = start(ApiScript {
        pause: std::time::Duration::from_millis(60),
        ..ApiScript::default()
    })
    .await;
    lists_and_calls(&s, &over_http(&s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_launching_skillctl_mcp_gets_the_same_over_stdio() {
    let s = start(ApiScript {
        pause: std::time::Duration::from_millis(60),
        ..ApiScript::default()
    })
    .await;
    lists_and_calls(&s, &over_stdio(&s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_skill_returns_structured_content() {
    let s = start(ApiScript {
        pieces: vec![
            "{\"name\": \"Anna\",".into(),
            " \"age\": 34, \"city\": \"Berlin\"}".into(),
        ],
        ..ApiScript::default()
    })
    .await;
    for transport in [over_http(&s), over_stdio(&s)] {
        let r = results(
            &s,
            &transport,
            json!([{"op": "call", "name": "extract-person", "arguments": {"input": "Anna is 34 and lives in Berlin."}}]),
        );
        let result = &r[0]["result"];
        assert_eq!(
            result["structuredContent"],
            json!({"name": "Anna", "age": 34, "city": "Berlin"}),
            "{result}"
        );
        let shown: Value = serde_json::from_str(&text_of(result)).unwrap();
        assert_eq!(shown, result["structuredContent"]);
    }
}

/// The user messages of the model requests that carried `marker`.
fn conversations_with(api: &FakeApi, marker: &str) -> Vec<Vec<String>> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            r.body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["role"] == "user")
                .filter_map(|m| m["content"].as_str().map(str::to_owned))
                .collect::<Vec<String>>()
        })
        .filter(|users| users.iter().any(|u| u.contains(marker)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mcp_client_keeps_its_own_conversation_apart_from_the_notebook() {
    let s = start(ApiScript::default()).await;
    let call = |input: &str| json!({"op": "call", "name": "chat", "arguments": {"input": input}});
    results(
        &s,
        &over_http(&s),
        json!([call("alpha one"), call("alpha two")]),
    );
    results(
        &s,
        &over_stdio(&s),
        json!([call("beta one"), call("beta two")]),
    );
    let mut client = s.daemon.client().await;
    let cell = run(&mut client, "%%run chat\ngamma one").await;
    assert_eq!(cell.status(), "ok", "{:?}", cell.reply.content);

    // Each second turn saw its own first turn, and nobody else's.
    assert_eq!(
        conversations_with(&s.api, "alpha two"),
        [vec!["alpha one".to_owned(), "alpha two".to_owned()]]
    );
    assert_eq!(
        conversations_with(&s.api, "beta two"),
        [vec!["beta one".to_owned(), "beta two".to_owned()]]
    );
    assert_eq!(
        conversations_with(&s.api, "gamma one"),
        [vec!["gamma one".to_owned()]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_stops_its_skill_and_the_session_goes_on() {
    let s = start(ApiScript::default()).await;
    for transport in [over_http(&s), over_stdio(&s)] {
        let r = results(
            &s,
            &transport,
            json!([
                {"op": "cancel", "name": "wait", "arguments": {"input": ""}, "after": 0.5},
                {"op": "call", "name": "say", "arguments": {"input": "still here"}},
            ]),
        );
        assert_eq!(r[0]["finished"], json!(false), "{}", r[0]);
        assert_eq!(text_of(&r[1]["result"]).trim(), "still here", "{}", r[1]);
        assert!(r[1]["ms"].as_f64().unwrap() < 5000.0, "{}", r[1]);
    }
    // The sleeps were killed, not left running for their 30 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sleeping = std::process::Command::new("pgrep")
            .args(["-f", "/bin/sleep 30"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        if !sleeping {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled skill's program still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_skill_tells_connected_clients_the_tools_changed() {
    let s = start(ApiScript::default()).await;
    let mut client = s.daemon.client().await;
    let ops = json!([
        {"op": "list_tools"},
        {"op": "wait_notice", "method": "notifications/tools/list_changed", "timeout": 20},
        {"op": "list_tools"},
    ]);
    let clients: Vec<_> = [over_http(&s), over_stdio(&s)]
        .into_iter()
        .map(|transport| {
            let ops = ops.clone();
            std::thread::spawn(move || sdk_client(&transport, &ops))
        })
        .collect();
    // Both clients are listening by now.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let out = run(&mut client, "%skill disable headline").await;
    assert_eq!(out.status(), "ok", "{:?}", out.reply.content);
    for handle in clients {
        let out = handle.join().unwrap();
        assert!(out.get("error").is_none(), "{out}\n{}", s.daemon.log());
        let r = &out["results"];
        assert!(names(&r[0]).contains(&"headline".to_owned()));
        assert_eq!(r[1], json!(true), "no list_changed notice");
        assert!(!names(&r[2]).contains(&"headline".to_owned()), "{}", r[2]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_gets_401_and_bad_json_rpc_gets_an_error() {
    let s = start(ApiScript::default()).await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string();
    let accept = ("Accept", "application/json, text/event-stream");
    let json_type = ("Content-Type", "application/json");
    let (status, body) = http(s.port, "POST", "/mcp", &[accept, json_type], &initialize);
    assert_eq!(status, 401, "{body}");
    let wrong = "Bearer not-the-token";
    let (status, _) = http(
        s.port,
        "POST",
        "/mcp",
        &[accept, json_type, ("Authorization", wrong)],
        &initialize,
    );
    assert_eq!(status, 401);
    let out = sdk_client(
        &json!({"http": format!("http://127.0.0.1:{}/mcp", s.port), "token": "nope"}),
        &json!([{"op": "list_tools"}]),
    );
    // The SDK's client refuses to go on (it reports a failed request, not
    // the status the raw requests above saw).
    assert!(out["error"].is_string(), "{out}");
    assert_eq!(out["results"], json!([]), "{out}");

    // With the token: a body that is not JSON-RPC is refused as such…
    let bearer = format!("Bearer {}", s.token);
    let auth = ("Authorization", bearer.as_str());
    let (status, body) = http(
        s.port,
        "POST",
        "/mcp",
        &[accept, json_type, auth],
        "{not json",
    );
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(
        body.contains("-32700") || body.to_lowercase().contains("parse"),
        "{body}"
    );
    // …the same client initializes, and the endpoint keeps serving.
    let (status, body) = http(
        s.port,
        "POST",
        "/mcp",
        &[accept, json_type, auth],
        &initialize,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("skillkernel"), "{body}");
    let r = results(&s, &over_http(&s), json!([{"op": "list_tools"}]));
    assert!(names(&r[0]).contains(&"say".to_owned()));
}

/// Runs `skillctl mcp` with `lines` as its input; what it wrote.
fn skillctl_mcp(s: &Setup, lines: &[String]) -> Vec<Value> {
    use std::io::Write;
    let mut child = std::process::Command::new(bin("skillctl"))
        .arg("--existing")
        .arg(&s.daemon.connection_file)
        .arg("mcp")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skillctl_mcp_answers_malformed_and_unknown_messages_with_json_rpc_errors() {
    let s = start(ApiScript::default()).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}});
    let lines = vec![
        "{this is not json".to_owned(),
        init.to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "no/such_method"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "no-such-skill", "arguments": {}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"wrong": true}}).to_string(),
        json!({"id": 5, "nonsense": true}).to_string(),
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "say", "arguments": {"input": "after all that"}}}).to_string(),
    ];
    let out = skillctl_mcp(&s, &lines);
    let by_id = |id: Value| {
        out.iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {out:?}"))
            .clone()
    };
    assert_eq!(by_id(Value::Null)["error"]["code"], -32700, "{out:?}");
    assert_eq!(
        by_id(json!(1))["result"]["serverInfo"]["name"],
        "skillkernel"
    );
    assert_eq!(by_id(json!(2))["error"]["code"], -32601, "{out:?}");
    assert!(by_id(json!(3))["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-skill"));
    assert!(by_id(json!(4))["error"]["code"].is_number(), "{out:?}");
    assert!(by_id(json!(5))["error"]["code"].is_number(), "{out:?}");
    assert_eq!(
        text_of(&by_id(json!(6))["result"]).trim(),
        "after all that",
        "{out:?}"
    );
}
