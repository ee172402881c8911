//! `skillkernel sandbox-exec` against what issue 20 closed: a denied path
//! inside a grant is kept shut while the rest of the grant works, and a
//! program granted network by host reaches nothing but the run's proxy.
//! Each probe stands beside the allowed work succeeding.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use harness::sandbox::{policy_in, sandboxed, PYTHON};
use harness::{bin, require_landlock};
use serde_json::{json, Value};

/// A denied file in the workspace (a connection file) is masked, the rest
/// of the workspace whole — as root (a mount namespace) and, through
/// `setpriv`, as an unprivileged user (inside a user namespace, where
/// real users run the daemon).
#[test]
fn a_denied_file_in_the_workspace_is_masked_for_root_and_for_a_user() {
    require_landlock!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let workspace = root.join("ws");
    std::fs::create_dir(&workspace).unwrap();
    std::fs::set_permissions(&workspace, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(workspace.join("kernel.json"), "HMAC-KEY-SECRET").unwrap();
    std::fs::write(workspace.join("notes.txt"), "workspace notes").unwrap();
    for f in ["kernel.json", "notes.txt"] {
        let mode = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(workspace.join(f), mode).unwrap();
    }
    let policy = json!({"workspace": workspace, "deny": [workspace.join("kernel.json")]});
    let script = "cat kernel.json; cat notes.txt; echo made > new.txt && cat new.txt";

    let run = sandboxed(&policy, &["/bin/sh", "-c", script]);
    check_masked(&run, "privileged");

    // The helper must be where an unprivileged user can run it.
    let unprivileged = nix::unistd::geteuid().is_root()
        && Command::new("setpriv").arg("--version").output().is_ok();
    if !unprivileged {
        eprintln!("SKIPPED (the user part): needs root and setpriv to become nobody");
        return;
    }
    let helper = root.join("skillkernel");
    std::fs::copy(bin("skillkernel"), &helper).unwrap();
    std::fs::remove_file(workspace.join("new.txt")).unwrap();
    let (status_read, status_write) = nix::unistd::pipe().unwrap();
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&helper)
        .args(["sandbox-exec", "--policy-json", &policy.to_string()])
        .arg("--status-fd")
        .arg(status_write.as_raw_fd().to_string())
        .args(["--", "/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    drop(status_write);
    let mut status = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(status_read), &mut status).unwrap();
    let lines: Vec<Value> = status
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let describe = format!("{output:?} {lines:?}");
    if lines
        .iter()
        .any(|l| l["event"] == "applied" && l["hidden"]["namespace"].is_null())
    {
        // No user namespaces here: then Landlock alone keeps it out.
        eprintln!("NOTE: no user namespace for nobody on this host: {describe}");
        assert!(!stdout.contains("HMAC-KEY-SECRET"), "{describe}");
        return;
    }
    let applied = lines
        .iter()
        .find(|l| l["event"] == "applied")
        .unwrap_or_else(|| panic!("{describe}"));
    assert_eq!(applied["hidden"]["namespace"], "user", "{describe}");
    assert!(output.status.success(), "{describe}");
    assert!(!stdout.contains("HMAC-KEY-SECRET"), "{describe}");
    assert!(
        stdout.contains("workspace notes") && stdout.contains("made"),
        "{describe}"
    );
}

fn check_masked(run: &harness::sandbox::Run, namespace: &str) {
    assert!(run.status.success(), "{}", run.describe());
    assert!(
        !run.stdout.contains("HMAC-KEY-SECRET"),
        "{}",
        run.describe()
    );
    assert!(run.stdout.contains("workspace notes"), "{}", run.describe());
    assert!(run.stdout.contains("made"), "{}", run.describe());
    let hidden = &run.applied()["hidden"];
    assert_eq!(hidden["namespace"], namespace, "{}", run.describe());
    assert!(
        hidden["masked"][0]
            .as_str()
            .unwrap_or("")
            .ends_with("kernel.json"),
        "{}",
        run.describe()
    );
}

/// Network by host at the helper: the program's network namespace holds
/// only `lo`, where `127.0.0.1:3128` is the bridge to the run's proxy
/// socket (here the test's own listener, which gets what the program
/// sends) — and a server on the host's loopback, reached straight, is not
/// there for it.
#[test]
fn by_host_the_bridge_is_the_only_way_out() {
    require_landlock!();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("proxy.sock");
    let proxy = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let got = std::thread::spawn(move || {
        let (mut stream, _) = proxy.accept().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stream, &mut text).unwrap();
        text
    });
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let workspace = tempfile::tempdir().unwrap();
    let mut policy = policy_in(workspace.path());
    policy["network_hosts"] = json!(["example.com"]);
    policy["proxy_socket"] = json!(socket);
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'through the bridge'); s.close()\n\
         try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('REACHED')\n\
         except OSError as e:\n    print('straight refused', e.errno)\n"
    );
    let run = sandboxed(&policy, &[PYTHON, "-c", &script]);
    assert!(run.status.success(), "{}", run.describe());
    assert_eq!(got.join().unwrap(), "through the bridge");
    assert!(
        run.stdout.contains("straight refused"),
        "{}",
        run.describe()
    );
    assert!(!run.stdout.contains("REACHED"), "{}", run.describe());
    assert_eq!(
        run.applied()["network_namespace"],
        "privileged",
        "{}",
        run.describe()
    );
    assert_eq!(
        run.applied()["seccomp"],
        "network_by_host",
        "{}",
        run.describe()
    );
    // The control: with the whole network the same server is reached.
    let mut open = policy_in(workspace.path());
    open["network"] = json!(true);
    let control = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('reached')\n"
    );
    let run = sandboxed(&open, &[PYTHON, "-c", &control]);
    assert!(run.stdout.contains("reached"), "{}", run.describe());
}
