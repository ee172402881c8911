//! The daemon as an MCP client of real MCP servers — `mcp-server-time`
//! and `mcp-server-git` from PyPI (in the test venv) and npm's
//! `@modelcontextprotocol/server-everything` — launched in the sandbox
//! over stdio or reached over Streamable HTTP. Cells call them with
//! `%mcp`, `skillctl mcp servers|tools` lists them, and skills call their
//! tools in the tool loop.

mod setup;
mod skills;

use std::path::Path;
use std::process::Command;

use harness::mcp::{server_everything, venv_program};
use harness::{free_port, run, shown};
use serde_json::json;

use setup::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_start_on_first_use_and_answer_cells_while_broken_ones_fail_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let repo = make_repo(dir.path());
    let sections = [
        stdio(
            "time",
            &venv_program("mcp-server-time"),
            &["--local-timezone", "UTC"],
            "",
        ),
        stdio(
            "git",
            &venv_program("mcp-server-git"),
            &["--repository", repo.to_str().unwrap()],
            &format!(
                "read = [{:?}]\nenv = {{ GIT_CONFIG_GLOBAL = \"/dev/null\" }}",
                repo
            ),
        ),
        stdio("missing", Path::new("/nonexistent/mcp-server"), &[], ""),
        stdio(
            "hangs",
            Path::new("/bin/sleep"),
            &["600"],
            "startup_timeout_secs = 2",
        ),
    ]
    .concat();
    let daemon = start(dir.path(), &sections, &[], &[]);
    let listed = servers(&daemon);
    assert_eq!(listed.len(), 4);
    assert!(
        listed.iter().all(|s| s["state"] == "stopped"),
        "nothing starts before it is used: {listed:?}"
    );
    let mut client = daemon.client().await;

    let paris = ok(
        &mut client,
        &daemon,
        r#"%mcp call time.get_current_time {"timezone": "Europe/Paris"}"#,
    )
    .await;
    let answer = json_shown(&paris);
    assert_eq!(answer["timezone"], "Europe/Paris", "{answer}");
    assert!(answer["datetime"].as_str().is_some_and(|d| d.len() > 18));
    assert!(shown(&paris).contains("```json"), "{}", shown(&paris));

    let log = ok(
        &mut client,
        &daemon,
        &format!("%mcp call git.git_log {{\"repo_path\": {:?}}}", repo),
    )
    .await;
    assert!(
        shown(&log).contains("the first commit of the test"),
        "{}",
        shown(&log)
    );

    // A tool's own error is shown and fails the cell.
    let mars = failed(
        &mut client,
        r#"%mcp call time.get_current_time {"timezone": "Mars/Olympus"}"#,
    )
    .await;
    assert!(
        mars.contains("`time.get_current_time` reported an error"),
        "{mars}"
    );
    assert!(mars.contains("Mars/Olympus"), "{mars}");

    let missing = failed(&mut client, "%mcp call missing.anything {}").await;
    assert!(
        missing.contains("MCP server `missing` could not start"),
        "{missing}"
    );
    assert!(missing.contains("/nonexistent/mcp-server"), "{missing}");
    let hangs = failed(&mut client, "%mcp call hangs.anything").await;
    assert!(
        hangs.contains("MCP server `hangs` could not start"),
        "{hangs}"
    );
    assert!(hangs.contains("within 2 s"), "{hangs}");
    let unknown = failed(&mut client, "%mcp call nosuch.tool {}").await;
    assert!(
        unknown.contains("no MCP server `nosuch`") && unknown.contains("git, hangs, missing, time"),
        "{unknown}"
    );
    let bad = run(&mut client, "%mcp call time.get_current_time [1]").await;
    assert_eq!(bad.reply.content["ename"], "UsageError", "{}", shown(&bad));

    // The kernel carries on: the good servers still answer.
    ok(
        &mut client,
        &daemon,
        r#"%mcp call time.get_current_time {"timezone": "UTC"}"#,
    )
    .await;

    let listed = servers(&daemon);
    let time = server(&listed, "time");
    assert_eq!(time["state"], "running");
    assert!(time["pid"].as_u64().is_some_and(|p| p > 1));
    assert!(time["tools"]
        .as_array()
        .unwrap()
        .contains(&json!("get_current_time")));
    assert_eq!(server(&listed, "missing")["state"], "failed");

    // `skillctl mcp tools` lists every server's tools, says which could
    // not list theirs, and exits 1 for them.
    let tools = daemon.skillctl(&["mcp", "tools"]);
    assert_eq!(tools.status.code(), Some(1), "{tools:?}");
    let text = String::from_utf8_lossy(&tools.stdout);
    assert!(text.contains("time.convert_time"), "{text}");
    assert!(text.contains("git.git_status"), "{text}");
    assert!(text.contains("missing.*"), "{text}");
    let one = daemon.skillctl(&["mcp", "tools", "time"]);
    assert!(one.status.success(), "{one:?}");
    let markdown = ok(&mut client, &daemon, "%mcp").await;
    assert!(
        shown(&markdown).contains("| time | stdio |"),
        "{}",
        shown(&markdown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_is_started_again_and_a_call_it_dies_in_names_it() {
    let Some(everything) = server_everything() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sections = stdio("everything", &everything, &["stdio"], "");
    let daemon = start(dir.path(), &sections, &[], &[]);
    let mut client = daemon.client().await;
    let echo = r#"%mcp call everything.echo {"message": "still here"}"#;
    let first = ok(&mut client, &daemon, echo).await;
    assert!(
        shown(&first).contains("Echo: still here"),
        "{}",
        shown(&first)
    );
    let pid = server(&servers(&daemon), "everything")["pid"]
        .as_i64()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let crashed = servers(&daemon);
    assert_eq!(
        server(&crashed, "everything")["state"],
        "crashed",
        "{crashed:?}"
    );
    let again = ok(&mut client, &daemon, echo).await;
    assert!(shown(&again).contains("Echo: still here"));
    let restarted = servers(&daemon);
    let entry = server(&restarted, "everything");
    assert_eq!(
        (entry["starts"].as_u64(), entry["crashes"].as_u64()),
        (Some(2), Some(1))
    );
    let new_pid = entry["pid"].as_i64().unwrap();
    assert_ne!(new_pid, pid);

    // Dying in the middle of a call: the call fails naming the server.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(new_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let died = failed(
        &mut client,
        r#"%mcp call everything.trigger-long-running-operation {"duration": 20, "steps": 4}"#,
    )
    .await;
    killer.join().unwrap();
    assert!(
        died.contains(
            "MCP server `everything` ended during the call of `trigger-long-running-operation`"
        ),
        "{died}"
    );
    assert!(died.contains("SIGKILL"), "{died}");
    ok(&mut client, &daemon, echo).await;

    // Servers stop with the daemon.
    let last = server(&servers(&daemon), "everything")["pid"]
        .as_i64()
        .unwrap();
    let mut daemon = daemon;
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(daemon
        .wait_exit(std::time::Duration::from_secs(20))
        .is_some());
    // Reaped by init once the daemon is gone: give it a moment.
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(last as i32), None).is_err()
    });
    assert!(gone, "the server outlived the daemon:\n{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gets_only_the_environment_network_and_writes_its_section_grants() {
    let dir = tempfile::tempdir().unwrap();
    let repo = make_repo(dir.path());
    let git = venv_program("mcp-server-git");
    let repo_args = ["--repository", repo.to_str().unwrap()];
    let env = "env = { GIT_CONFIG_GLOBAL = \"/dev/null\" }";
    let mut sections = [
        stdio(
            "reader",
            &git,
            &repo_args,
            &format!("read = [{repo:?}]\n{env}"),
        ),
        stdio(
            "writer",
            &git,
            &repo_args,
            &format!("write = [{repo:?}]\n{env}"),
        ),
    ]
    .concat();
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/net_probe_server.py");
    let python = harness::otlp::python();
    let probe_args = [probe.to_str().unwrap()];
    let probe_dir = format!("read = [{:?}]", probe.parent().unwrap());
    sections.push_str(&stdio("offline", &python, &probe_args, &probe_dir));
    sections.push_str(&stdio(
        "online",
        &python,
        &probe_args,
        &format!("{probe_dir}\nnetwork = true"),
    ));
    let everything = server_everything();
    if let Some(program) = &everything {
        sections.push_str(&stdio(
            "everything",
            program,
            &["stdio"],
            "env = { GIVEN_TO_IT = \"yes\" }",
        ));
    }
    let daemon = start(dir.path(), &sections, &[("DAEMON_SECRET", "s3cret")], &[]);
    let mut client = daemon.client().await;
    std::fs::write(repo.join("new.txt"), "two\n").unwrap();
    let add = format!(
        "%mcp call {{}}.git_add {{\"repo_path\": {:?}, \"files\": [\"new.txt\"]}}",
        repo
    );
    // Read-only: the server reads the repository but cannot stage a file.
    let status = ok(
        &mut client,
        &daemon,
        &format!("%mcp call reader.git_status {{\"repo_path\": {:?}}}", repo),
    )
    .await;
    assert!(shown(&status).contains("new.txt"), "{}", shown(&status));
    let denied = failed(&mut client, &add.replace("{}", "reader")).await;
    assert!(denied.contains("reported an error"), "{denied}");
    // The same call with the repository writable stages it.
    ok(&mut client, &daemon, &add.replace("{}", "writer")).await;
    let staged = Command::new("git")
        .args(["diff", "--cached", "--name-only"])
        .current_dir(&repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&staged.stdout).trim(), "new.txt");

    // The network: a server may connect only when its section grants it
    // (the same program, granted, connects: the positive control).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("%mcp call {{}}.connect {{\"port\": {port}}}");
    let offline = ok(&mut client, &daemon, &connect.replace("{}", "offline")).await;
    assert!(shown(&offline).contains("refused"), "{}", shown(&offline));
    let online = ok(&mut client, &daemon, &connect.replace("{}", "online")).await;
    assert!(shown(&online).contains("connected"), "{}", shown(&online));

    if everything.is_some() {
        let env = ok(&mut client, &daemon, "%mcp call everything.get-env").await;
        let env = json_shown(&env).to_string() + &shown(&env);
        assert!(env.contains("GIVEN_TO_IT"), "{env}");
        assert!(!env.contains("DAEMON_SECRET"), "{env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_is_reached_with_its_token_and_a_wrong_token_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("skills/say")).unwrap();
    std::fs::write(
        dir.path().join("skills/say/skill.yaml"),
        "name: say\nversion: 1.0.0\ndescription: Echoes its input.\ntype: command\ncommand: /bin/echo\nargs: [\"{{ input }}\"]\n",
    )
    .unwrap();
    // The daemon's own MCP endpoint is the HTTP server it reaches: a real
    // Streamable HTTP server with a bearer token.
    let port = free_port();
    let token_file = dir.path().join("mcp-token");
    std::fs::write(&token_file, "the-right-token\n").unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut sections = format!(
        "[mcp.server]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {token_file:?}\n\
         [mcp.servers.self]\nurl = \"{url}\"\ntoken_env = \"SELF_TOKEN\"\n\
         [mcp.servers.wrong]\nurl = \"{url}\"\ntoken_env = \"WRONG_TOKEN\"\n\
         [mcp.servers.unset]\nurl = \"{url}\"\ntoken_env = \"NOT_SET_ANYWHERE\"\n"
    );
    // A third-party Streamable HTTP server, where Node is.
    let mut node_server = None;
    if server_everything().is_some() {
        let port = free_port();
        sections.push_str(&format!(
            "[mcp.servers.remote]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
        ));
        node_server = Some((spawn_everything_http(port), port));
    }
    let daemon = start(
        dir.path(),
        &sections,
        &[
            ("SELF_TOKEN", "the-right-token"),
            ("WRONG_TOKEN", "a-wrong-one"),
        ],
        &[],
    );
    let mut client = daemon.client().await;
    let said = ok(
        &mut client,
        &daemon,
        r#"%mcp call self.say {"input": "hello over http"}"#,
    )
    .await;
    assert!(shown(&said).contains("hello over http"), "{}", shown(&said));
    let wrong = failed(&mut client, r#"%mcp call wrong.say {"input": "x"}"#).await;
    assert!(
        wrong.contains("MCP server `wrong` could not start") && wrong.contains("401"),
        "{wrong}"
    );
    assert!(wrong.contains("token"), "{wrong}");
    let unset = failed(&mut client, r#"%mcp call unset.say {"input": "x"}"#).await;
    assert!(unset.contains("`NOT_SET_ANYWHERE`"), "{unset}");
    if let Some((mut child, port)) = node_server.take() {
        let echo = r#"%mcp call remote.echo {"message": "over the network"}"#;
        let first = ok(&mut client, &daemon, echo).await;
        assert!(
            shown(&first).contains("Echo: over the network"),
            "{}",
            shown(&first)
        );
        let listed = servers(&daemon);
        assert_eq!(server(&listed, "remote")["transport"], "http");
        // The server restarts and forgets the session: the call on the
        // old session fails naming it, and the next starts a new one.
        let _ = child.0.kill();
        let _ = child.0.wait();
        child = spawn_everything_http(port);
        let lost = failed(&mut client, echo).await;
        assert!(lost.contains("MCP server `remote`"), "{lost}");
        let again = ok(&mut client, &daemon, echo).await;
        assert!(shown(&again).contains("Echo: over the network"));
        drop(child);
    }
}
