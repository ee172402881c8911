//! The escape corpus, run as real command skills through a real daemon:
//! every attempt is stopped with `SECURITY_VIOLATION` or `SKILL_TIMEOUT`
//! and an audit-log entry, the allowed operations of the same skills still
//! work, and the daemon keeps serving. Also `!command` cells in the
//! sandbox, session skills, `%sandbox status` and `skillctl sandbox`.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{run, Daemon, Launch};
use serde_json::Value;
use skillctl::{ExecuteOutcome, KernelClient};

mod sessions;

const PYTHON: &str = "/usr/bin/python3";

/// A workspace (the daemon's working directory), a directory outside it,
/// a fake home with an SSH key, the corpus skills and a config.
struct Corpus {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    outside: PathBuf,
    home: PathBuf,
    config: PathBuf,
}

fn skill(dir: &Path, name: &str, body: &str) {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("skill.yaml"),
        format!("name: {name}\nversion: 1.0.0\ndescription: Escape corpus.\ntype: command\n{body}"),
    )
    .unwrap();
}

fn corpus() -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (workspace, outside, home) = (root.join("ws"), root.join("outside"), root.join("home"));
    for d in [&workspace, &outside, &home.join(".ssh")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(workspace.join("notes.txt"), "inside the workspace\n").unwrap();
    std::fs::write(outside.join("secret.txt"), "outside secret\n").unwrap();
    std::fs::write(home.join(".ssh/id_rsa"), "PRIVATE KEY\n").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), workspace.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, workspace.join("linkdir")).unwrap();
    let skills = root.join("skills");
    skill(&skills, "reader", "command: cat\nargs: [\"{{input}}\"]\n");
    skill(
        &skills,
        "writer",
        "command: /bin/sh\nargs: [\"-c\", \"echo written > \\\"$0\\\"\", \"{{input}}\"]\n",
    );
    let connect = "import socket, sys\\ns = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\\ns.sendall(b'hi')\\nprint('connected')";
    skill(
        &skills,
        "net",
        &format!("command: {PYTHON}\nargs: [\"-c\", \"{connect}\", \"{{{{input}}}}\"]\n"),
    );
    skill(
        &skills,
        "net-granted",
        &format!("command: {PYTHON}\nargs: [\"-c\", \"{connect}\", \"{{{{input}}}}\"]\npermissions:\n  network: true\n"),
    );
    skill(
        &skills,
        "membomb",
        &format!("command: {PYTHON}\nargs: [\"-c\", \"b = bytearray(2 * 1024**3); print(len(b))\"]\nresource_limits:\n  memory_mb: 256\n"),
    );
    skill(
        &skills,
        "spin",
        "command: /bin/sh\nargs: [\"-c\", \"while :; do :; done\"]\nresource_limits:\n  cpu_secs: 1\ntimeout: 60\n",
    );
    skill(
        &skills,
        "filler",
        &format!("command: {PYTHON}\nargs: [\"-c\", \"open('big.bin', 'wb').write(bytes(50_000_000))\"]\nresource_limits:\n  file_size_mb: 1\n"),
    );
    skill(
        &skills,
        "env-reader",
        "command: /bin/sh\nargs: [\"-c\", \"env; cat /proc/$PPID/environ\"]\n",
    );
    skill(
        &skills,
        "env-granted",
        "command: /bin/sh\nargs: [\"-c\", \"echo secret=$SKILLKERNEL_TEST_SECRET\"]\npermissions:\n  env: [SKILLKERNEL_TEST_SECRET]\n",
    );
    skill(
        &skills,
        "sleeper",
        "command: sleep\nargs: [\"30\"]\ntimeout: 1\n",
    );
    // Bounded (500 forks, children sleep 2 s): harmless if the layer failed.
    let fork = "import os, time\\nfor i in range(500):\\n    if os.fork() == 0:\\n        time.sleep(2)\\n        os._exit(0)\\nprint('forked 500')";
    skill(
        &skills,
        "forkbomb",
        &format!(
            "command: {PYTHON}\nargs: [\"-c\", \"{fork}\"]\nresource_limits:\n  processes: 32\n"
        ),
    );
    skill(
        &skills,
        "flaky",
        "command: /bin/sh\nargs: [\"-c\", \"echo try >&2; exit 3\"]\nretries: 1\n\
         resilience: {backoff_initial_ms: 10}\nfallback:\n  command: echo\n  args: [\"fallback ran\"]\n",
    );
    skill(
        &skills,
        "missing",
        "command: no-such-program-anywhere\nfallback:\n  command: echo\n  args: [\"found another\"]\n",
    );
    let shell = skills.join("shsession");
    std::fs::create_dir_all(&shell).unwrap();
    std::fs::write(
        shell.join("skill.yaml"),
        "name: shsession\nversion: 1.0.0\ndescription: A shell session.\ntype: session\ncommand: /bin/sh\n",
    )
    .unwrap();
    let session = skills.join("pysession");
    std::fs::create_dir_all(&session).unwrap();
    std::fs::write(
        session.join("skill.yaml"),
        format!(
            "name: pysession\nversion: 1.0.0\ndescription: A Python session.\ntype: session\n\
             command: {PYTHON}\nargs: [\"-u\", \"-q\", \"-i\", \"-c\", \"import sys; sys.ps1 = sys.ps2 = ''\"]\n\
             marker: 'print(\"{{marker}}\")'\ntimeout: 20\n"
        ),
    )
    .unwrap();
    let config = root.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n\
             [sandbox]\nmax_output_bytes = 100000\n",
            root.join("user-skills")
        ),
    )
    .unwrap();
    Corpus {
        _dir: dir,
        workspace,
        outside,
        home,
        config,
    }
}

fn start(c: &Corpus) -> Daemon {
    let launch = Launch {
        cwd: Some(c.workspace.clone()),
        env: vec![
            ("HOME".into(), c.home.display().to_string()),
            ("SKILLKERNEL_TEST_SECRET".into(), "hunter2".into()),
        ],
        ..Launch::default()
    };
    Daemon::start_with(launch, &["--config", c.config.to_str().unwrap()])
}

/// Runs `%skill run NAME -- INPUT`.
async fn skill_run(client: &mut KernelClient, name: &str, input: &str) -> ExecuteOutcome {
    run(client, &format!("%skill run {name} -- {input}")).await
}

/// `%sandbox status`, and the JSON report it displays.
async fn sandbox_status(client: &mut KernelClient) -> (ExecuteOutcome, Value) {
    let outcome = run(client, "%sandbox status").await;
    let report = outcome
        .iopub
        .iter()
        .find_map(|m| m.content["data"].get("application/json").cloned())
        .unwrap_or_else(|| panic!("no JSON report: {:?}", outcome.reply.content));
    (outcome, report)
}

fn ename(outcome: &ExecuteOutcome) -> &str {
    outcome.reply.content["ename"].as_str().unwrap_or("")
}

fn audit(daemon: &Daemon) -> Vec<Value> {
    let path = daemon.dir.path().join("state/sandbox-audit.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The audit entries of `skill` with `event`.
fn entries<'a>(log: &'a [Value], skill: &str, event: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|e| e["skill"] == skill && e["event"] == event)
        .collect()
}

fn assert_stopped(outcome: &ExecuteOutcome, code: &str, what: &str) {
    assert_eq!(
        outcome.status(),
        "error",
        "{what}: {:?}\nstdout: {:?}\nstderr: {:?}",
        outcome.reply.content,
        outcome.stream_text("stdout"),
        outcome.stream_text("stderr")
    );
    assert_eq!(ename(outcome), code, "{what}: {:?}", outcome.reply.content);
}

/// A TCP listener counting the connections it accepts.
fn listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 2];
            let _ = (&stream).read(&mut buf);
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_escape_corpus_is_stopped_audited_and_the_allowed_work_still_runs() {
    let c = corpus();
    let daemon = start(&c);
    let mut client = daemon.client().await;

    // Reading: the workspace yes; /etc/shadow, ~/.ssh and a symlink out no.
    let notes = skill_run(&mut client, "reader", "notes.txt").await;
    assert_eq!(notes.status(), "ok", "{:?}", notes.reply.content);
    assert!(notes.stream_text("stdout").contains("inside the workspace"));
    let shadow = skill_run(&mut client, "reader", "/etc/shadow").await;
    assert_stopped(&shadow, "SECURITY_VIOLATION", "reading /etc/shadow");
    let key = c.home.join(".ssh/id_rsa");
    let ssh = skill_run(&mut client, "reader", key.to_str().unwrap()).await;
    assert_stopped(&ssh, "SECURITY_VIOLATION", "reading ~/.ssh");
    assert!(!ssh.stream_text("stdout").contains("PRIVATE KEY"));
    let link = skill_run(&mut client, "reader", "link.txt").await;
    assert_stopped(
        &link,
        "SECURITY_VIOLATION",
        "a symlink out of the workspace",
    );
    assert!(!link.stream_text("stdout").contains("outside secret"));

    // Writing: inside yes; outside and through a symlinked directory no.
    let inside = skill_run(&mut client, "writer", "out.txt").await;
    assert_eq!(inside.status(), "ok", "{:?}", inside.reply.content);
    assert_eq!(
        std::fs::read_to_string(c.workspace.join("out.txt")).unwrap(),
        "written\n"
    );
    let target = c.outside.join("pwned.txt");
    let out = skill_run(&mut client, "writer", target.to_str().unwrap()).await;
    assert_stopped(&out, "SECURITY_VIOLATION", "writing outside the workspace");
    let via_link = skill_run(&mut client, "writer", "linkdir/pwned.txt").await;
    assert_stopped(&via_link, "SECURITY_VIOLATION", "writing through a symlink");
    assert!(!target.exists(), "nothing was written outside");

    // Network: denied by default, allowed when granted.
    let (port, accepted) = listener();
    let net = skill_run(&mut client, "net", &port.to_string()).await;
    assert_stopped(&net, "SECURITY_VIOLATION", "a TCP connection");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection got through"
    );
    let granted = skill_run(&mut client, "net-granted", &port.to_string()).await;
    assert_eq!(granted.status(), "ok", "{:?}", granted.reply.content);
    assert!(granted.stream_text("stdout").contains("connected"));

    // Resources: memory, CPU, file size; a wall-clock timeout.
    let mem = skill_run(&mut client, "membomb", "").await;
    assert_stopped(&mem, "SECURITY_VIOLATION", "a memory bomb");
    let spin = skill_run(&mut client, "spin", "").await;
    assert_stopped(&spin, "SKILL_TIMEOUT", "a CPU spin");
    let fill = skill_run(&mut client, "filler", "").await;
    assert_stopped(&fill, "SECURITY_VIOLATION", "filling the disk");
    let size = std::fs::metadata(c.workspace.join("big.bin")).map_or(0, |m| m.len());
    assert!(
        size <= 1 << 20,
        "the file stopped at the limit: {size} bytes"
    );
    let started = Instant::now();
    let sleeper = skill_run(&mut client, "sleeper", "").await;
    assert_stopped(&sleeper, "SKILL_TIMEOUT", "a command past its timeout");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A fork bomb stops at the process limit (RLIMIT_NPROC, or the pids
    // cgroup for a root daemon), unless this host can enforce neither.
    let fork_limit = harness::sandbox::layer_unavailable("processes");
    if let Some(why) = &fork_limit {
        eprintln!("skipping the fork bomb: {why}");
    } else {
        let bomb = skill_run(&mut client, "forkbomb", "").await;
        assert_stopped(&bomb, "SECURITY_VIOLATION", "a fork bomb");
        assert!(!bomb.stream_text("stdout").contains("forked 500"));
    }

    // The daemon's environment: scrubbed, and /proc/<daemon>/environ closed.
    let env = skill_run(&mut client, "env-reader", "").await;
    assert_stopped(&env, "SECURITY_VIOLATION", "reading the daemon's environ");
    assert!(!env.stream_text("stdout").contains("hunter2"));
    let env_ok = skill_run(&mut client, "env-granted", "").await;
    assert_eq!(env_ok.stream_text("stdout"), "secret=hunter2\n");

    // The daemon is unharmed.
    let alive = run(&mut client, "!echo alive").await;
    assert_eq!(alive.stream_text("stdout"), "alive\n");

    let log = audit(&daemon);
    for e in &log {
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
    let shadow_entry = entries(&log, "reader", "denied_path");
    assert!(
        shadow_entry.iter().any(|e| e["path"] == "/etc/shadow"),
        "{log:#?}"
    );
    assert!(shadow_entry.iter().all(|e| e["version"] == "1.0.0"));
    assert!(shadow_entry
        .iter()
        .any(|e| e["path"] == key.to_str().unwrap()));
    assert!(!entries(&log, "writer", "denied_path").is_empty());
    assert_eq!(entries(&log, "net", "denied_network").len(), 1, "{log:#?}");
    assert_eq!(
        entries(&log, "net-granted", "permission_granted")[0]["grant"],
        "network"
    );
    for (skill, limit) in [
        ("membomb", "memory"),
        ("spin", "cpu"),
        ("filler", "file_size"),
    ] {
        let kills = entries(&log, skill, "limit_kill");
        assert_eq!(kills.len(), 1, "{skill}: {log:#?}");
        assert_eq!(kills[0]["limit"], limit);
    }
    assert_eq!(entries(&log, "sleeper", "timeout").len(), 1);
    assert!(entries(&log, "env-reader", "denied_path")
        .iter()
        .any(|e| e["path"].as_str().is_some_and(|p| p.ends_with("/environ"))));
    let env_grants = entries(&log, "env-granted", "permission_granted");
    assert_eq!(env_grants.len(), 1, "{env_grants:#?}");
    assert_eq!(env_grants[0]["grant"], "env");
    assert_eq!(env_grants[0]["names"][0], "SKILLKERNEL_TEST_SECRET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_cells_run_in_the_sandbox_and_sandbox_status_reports_the_layers() {
    let c = corpus();
    let daemon = start(&c);
    let mut client = daemon.client().await;
    let written = run(&mut client, "!echo cell > cell.txt && cat cell.txt").await;
    assert_eq!(written.stream_text("stdout"), "cell\n");
    let shadow = run(&mut client, "!cat /etc/shadow").await;
    assert_stopped(&shadow, "SECURITY_VIOLATION", "a cell reading /etc/shadow");
    let log = audit(&daemon);
    assert!(log
        .iter()
        .any(|e| e["source"] == "cell" && e["path"] == "/etc/shadow"));

    let (status, report) = sandbox_status(&mut client).await;
    assert_eq!(status.status(), "ok", "{:?}", status.reply.content);
    let layers: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        [
            "rlimits",
            "no_new_privs",
            "landlock",
            "seccomp",
            "processes"
        ]
    );
    for layer in report["layers"].as_array().unwrap() {
        assert!(!layer["detail"].as_str().unwrap().is_empty(), "{layer}");
    }
    assert_eq!(report["workspace"], c.workspace.to_str().unwrap());
    let markdown = status
        .iopub
        .iter()
        .find_map(|m| {
            m.content["data"]["text/markdown"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap();
    assert!(markdown.contains("| landlock |"), "{markdown}");

    let complete = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["active"] == true);
    let out = daemon.skillctl(&["sandbox", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(if complete { 0 } else { 1 }),
        "{text}"
    );
    assert!(
        text.contains("landlock") && text.contains("seccomp"),
        "{text}"
    );
    let json_out = daemon.skillctl(&["sandbox", "status", "--json"]);
    let parsed: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(parsed["layers"], report["layers"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_the_fallback_run_and_output_beyond_the_cap_is_stopped() {
    let c = corpus();
    let daemon = start(&c);
    let mut client = daemon.client().await;
    let flaky = skill_run(&mut client, "flaky", "").await;
    assert_eq!(flaky.status(), "ok", "{:?}", flaky.reply.content);
    assert_eq!(flaky.stream_text("stdout"), "fallback ran\n");
    assert_eq!(flaky.stream_text("stderr"), "try\ntry\n", "two attempts");
    assert_eq!(flaky.reply.metadata["skill"]["attempts"], 3);
    let missing = skill_run(&mut client, "missing", "").await;
    assert_eq!(missing.status(), "ok", "{:?}", missing.reply.content);
    assert_eq!(missing.stream_text("stdout"), "found another\n");

    // `yes` never stops on its own: the output cap (100 kB here) ends it.
    let started = Instant::now();
    let flood = run(&mut client, "!yes").await;
    assert_stopped(&flood, "SECURITY_VIOLATION", "output past the cap");
    assert!(started.elapsed() < Duration::from_secs(10));
    let shown = flood.stream_text("stdout").len();
    assert!((90_000..=100_000).contains(&shown), "{shown} bytes shown");
    let log = audit(&daemon);
    assert!(log
        .iter()
        .any(|e| e["source"] == "cell" && e["event"] == "limit_kill" && e["limit"] == "output"));
    assert_eq!(
        run(&mut client, "!echo on").await.stream_text("stdout"),
        "on\n"
    );
}
