//! What the MCP client tests share: a daemon with `[mcp.servers]`
//! sections, a git repository, the server listing, and cells that must
//! pass or fail with `McpError`.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::mcp::server_everything;
use harness::{run, shown, Daemon, Launch};
use serde_json::Value;
use skillctl::ExecuteOutcome;

/// A git repository with one commit, for `mcp-server-git`.
pub fn make_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("notes.txt"), "one\n").unwrap();
    git(&["add", "notes.txt"]);
    git(&[
        "-c",
        "user.name=Test",
        "-c",
        "user.email=test@example.com",
        "commit",
        "-qm",
        "the first commit of the test",
    ]);
    repo
}

/// A stdio server section: `program` with `args`, and `more` lines.
pub fn stdio(name: &str, program: &Path, args: &[&str], more: &str) -> String {
    format!(
        "[mcp.servers.{name}]\ncommand = {:?}\nargs = {args:?}\n{more}\n",
        program.display().to_string()
    )
}

/// A daemon whose config is `sections` (plus `[skills]` from `dir/skills`).
pub fn start(dir: &Path, sections: &str, env: &[(&str, &str)], args: &[&str]) -> Daemon {
    let config = dir.join("skillkernel.toml");
    std::fs::create_dir_all(dir.join("skills")).unwrap();
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n{sections}",
            dir.join("skills"),
            dir.join("user-skills"),
        ),
    )
    .unwrap();
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    Daemon::start_with(
        Launch {
            cwd: Some(workspace),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Launch::default()
        },
        &all,
    )
}

/// The `application/json` of a cell's display.
pub fn json_shown(outcome: &ExecuteOutcome) -> Value {
    outcome
        .of_type("display_data")
        .map(|m| m.content["data"]["application/json"].clone())
        .next()
        .unwrap_or(Value::Null)
}

pub fn servers(daemon: &Daemon) -> Vec<Value> {
    let out = daemon.skillctl(&["mcp", "servers", "--json"]);
    assert!(out.status.success(), "{out:?}\n{}", daemon.log());
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    reply["servers"].as_array().cloned().unwrap_or_default()
}

pub fn server<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no server {name} in {list:?}"))
}

pub async fn ok(
    client: &mut skillctl::KernelClient,
    daemon: &Daemon,
    code: &str,
) -> ExecuteOutcome {
    let ran = run(client, code).await;
    assert_eq!(
        ran.status(),
        "ok",
        "{code}: {}\n--- daemon log ---\n{}",
        shown(&ran),
        daemon.log()
    );
    ran
}

pub async fn failed(client: &mut skillctl::KernelClient, code: &str) -> String {
    let ran = run(client, code).await;
    assert_eq!(ran.status(), "error", "{code}: {}", shown(&ran));
    assert_eq!(ran.reply.content["ename"], "McpError", "{code}");
    ran.reply.content["evalue"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// npm's reference server over Streamable HTTP on `port`, listening.
pub fn spawn_everything_http(port: u16) -> KillOnDrop {
    let everything = server_everything().expect("server-everything");
    let child = Command::new(&everything)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "server-everything did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    KillOnDrop(child)
}

pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
