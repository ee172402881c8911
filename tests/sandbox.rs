//! The sandbox helper, `skillkernel sandbox-exec`, driven as the daemon
//! will drive it: each test tries a real escape (network, files outside the
//! allow-lists, bombs, secrets in the environment) and checks that the
//! layer meant to stop it does, and that the allowed operation still works.
//!
//! Layers the host cannot enforce (Landlock) are skipped with a printed
//! reason taken from `sandbox-exec --probe`, never silently.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::sandbox::{policy_in, probe, sandboxed, sandboxed_keeping_cgroup, PYTHON};
use harness::{bin, require_landlock, require_layer};
use serde_json::{json, Value};
use skillkernel_sandbox::cgroup;

#[test]
fn the_probe_reports_each_layer_with_the_kernel_release() {
    let probe = probe();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(probe["kernel_release"], release.trim());
    for layer in [
        "rlimits",
        "processes",
        "no_new_privs",
        "landlock",
        "seccomp",
    ] {
        assert!(probe[layer]["available"].is_boolean(), "{layer}: {probe}");
        assert!(
            probe[layer]["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{layer}: {probe}"
        );
    }
    assert_eq!(
        probe["landlock_abi"].as_u64().unwrap() > 0,
        probe["landlock"]["available"] == true
    );
}

#[test]
fn a_tcp_connection_is_refused_without_network_and_works_with_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let workspace = tempfile::tempdir().unwrap();
    let script = format!(
        "import socket\na, b = socket.socketpair()\nprint('unix ok')\n\
         socket.create_connection(('127.0.0.1', {port}), timeout=5)\nprint('connected')"
    );
    let program = [PYTHON, "-c", script.as_str()];

    let denied = sandboxed(&policy_in(workspace.path()), &program);
    assert!(!denied.status.success(), "{}", denied.describe());
    assert!(denied.stdout.contains("unix ok"), "{}", denied.describe());
    assert!(
        !denied.stdout.contains("connected"),
        "{}",
        denied.describe()
    );
    assert!(
        denied.stderr.contains("PermissionError"),
        "{}",
        denied.describe()
    );
    assert_eq!(denied.applied()["seccomp"], "network_denied");

    let mut granted = policy_in(workspace.path());
    granted["network"] = json!(true);
    let allowed = sandboxed(&granted, &program);
    assert!(allowed.status.success(), "{}", allowed.describe());
    assert!(
        allowed.stdout.contains("connected"),
        "{}",
        allowed.describe()
    );
    assert_eq!(allowed.applied()["seccomp"], "network_allowed");
}

#[test]
fn reading_outside_the_read_allow_list_fails_under_landlock() {
    require_landlock!();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("id_ed25519");
    std::fs::write(&secret, "PRIVATE KEY").unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let secret = secret.to_str().unwrap();

    let denied = sandboxed(&policy_in(workspace.path()), &["cat", secret]);
    assert!(!denied.status.success(), "{}", denied.describe());
    assert!(
        !denied.stdout.contains("PRIVATE KEY"),
        "{}",
        denied.describe()
    );
    assert!(
        denied.stderr.contains("Permission denied"),
        "{}",
        denied.describe()
    );
    assert_eq!(denied.applied()["landlock"]["status"], "fully_enforced");

    if Path::new("/etc/shadow").exists() {
        let shadow = sandboxed(&policy_in(workspace.path()), &["cat", "/etc/shadow"]);
        assert!(!shadow.status.success(), "{}", shadow.describe());
        assert!(shadow.stdout.is_empty(), "{}", shadow.describe());
    }

    let mut granted = policy_in(workspace.path());
    let mut read: Vec<Value> = skillkernel_defaults_read();
    read.push(json!(outside.path()));
    granted["read"] = json!(read);
    let allowed = sandboxed(&granted, &["cat", secret]);
    assert!(allowed.status.success(), "{}", allowed.describe());
    assert_eq!(allowed.stdout, "PRIVATE KEY");
}

/// The policy's default read list, as the helper reports it back.
fn skillkernel_defaults_read() -> Vec<Value> {
    [
        "/usr",
        "/bin",
        "/lib",
        "/lib64",
        "/etc/ld.so.cache",
        "/dev/urandom",
        "/proc/self",
    ]
    .iter()
    .map(|p| json!(p))
    .collect()
}

#[test]
fn writing_outside_the_workspace_fails_and_inside_it_works() {
    require_landlock!();
    let outside = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let escape = outside.path().join("planted");
    let script = format!("echo inside > result; echo escaped > {}", escape.display());

    let run = sandboxed(&policy_in(workspace.path()), &["sh", "-c", &script]);
    assert!(!run.status.success(), "{}", run.describe());
    assert!(
        !escape.exists(),
        "wrote outside the workspace: {}",
        run.describe()
    );
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("result")).unwrap(),
        "inside\n"
    );
}

#[test]
fn a_symlink_in_the_workspace_does_not_lead_out_of_it() {
    require_landlock!();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "PRIVATE").unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), workspace.path().join("link")).unwrap();

    let run = sandboxed(
        &policy_in(workspace.path()),
        &["sh", "-c", "cat link/secret; echo planted > link/planted"],
    );
    assert!(!run.status.success(), "{}", run.describe());
    assert!(!run.stdout.contains("PRIVATE"), "{}", run.describe());
    assert!(
        !outside.path().join("planted").exists(),
        "{}",
        run.describe()
    );
}

#[test]
fn the_policy_can_come_through_an_inherited_descriptor() {
    use std::io::Write;
    let workspace = tempfile::tempdir().unwrap();
    let mut policy = policy_in(workspace.path());
    policy["env"] = json!({ "FROM_FD": "yes" });
    let (policy_read, policy_write) = nix::unistd::pipe().unwrap();
    std::fs::File::from(policy_write)
        .write_all(policy.to_string().as_bytes())
        .unwrap();
    let child = Command::new(bin("skillkernel"))
        .args([
            "sandbox-exec",
            "--policy-fd",
            &policy_read.as_raw_fd().to_string(),
        ])
        .args(["--", "sh", "-c", "echo $FROM_FD; pwd"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    cgroup::remove_run_cgroup(pid);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let workspace = workspace.path().canonicalize().unwrap();
    assert_eq!(stdout, format!("yes\n{}\n", workspace.display()), "{out:?}");
}

#[test]
fn rlimit_fsize_stops_a_big_write() {
    let workspace = tempfile::tempdir().unwrap();
    let mut policy = policy_in(workspace.path());
    policy["limits"] = json!({ "file_size_bytes": 1 << 20 });
    let run = sandboxed(&policy, &["sh", "-c", "head -c 10000000 /dev/zero > big"]);
    assert!(!run.status.success(), "{}", run.describe());
    let written = std::fs::metadata(workspace.path().join("big"))
        .unwrap()
        .len();
    assert!(
        written <= 1 << 20,
        "wrote {written} bytes: {}",
        run.describe()
    );
}

#[test]
fn rlimit_as_stops_a_memory_bomb() {
    let workspace = tempfile::tempdir().unwrap();
    let mut policy = policy_in(workspace.path());
    policy["limits"] = json!({ "address_space_bytes": 512u64 << 20 });
    let run = sandboxed(
        &policy,
        &[PYTHON, "-c", "x = bytearray(10**10)\nprint('allocated')"],
    );
    assert!(!run.status.success(), "{}", run.describe());
    assert!(run.stderr.contains("MemoryError"), "{}", run.describe());
    assert!(!run.stdout.contains("allocated"), "{}", run.describe());
}

#[test]
fn rlimit_cpu_kills_a_spin() {
    let workspace = tempfile::tempdir().unwrap();
    let mut policy = policy_in(workspace.path());
    policy["limits"] = json!({ "cpu_secs": 1 });
    let started = Instant::now();
    let run = sandboxed(&policy, &["sh", "-c", "while :; do :; done"]);
    let signal = run.status.signal();
    assert!(
        signal == Some(libc_sigxcpu()) || signal == Some(9),
        "{}",
        run.describe()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// Forks children that sleep 1 s, until a fork fails or 200 succeeded (so
/// that without any limit the test still cannot exhaust the host), waits
/// for them, and prints `forks N error ERRNO-NAME`.
const BOUNDED_FORK_BOMB: &str = "\
import errno, os, time
children, error = [], None
while len(children) < 200:
    try:
        pid = os.fork()
    except OSError as e:
        error = errno.errorcode.get(e.errno, str(e.errno))
        break
    if pid == 0:
        time.sleep(1)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print('forks', len(children), 'error', error)
";

/// What the status line should name as the process limit's enforcer for
/// the user the tests run as.
fn expected_process_layer() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        "cgroup_pids"
    } else {
        "rlimit"
    }
}

macro_rules! require_process_limit {
    () => {
        require_layer!("processes", "no layer can enforce a process limit")
    };
}

#[test]
fn a_fork_bomb_is_stopped_at_the_process_limit() {
    require_process_limit!();
    let workspace = tempfile::tempdir().unwrap();
    let mut policy = policy_in(workspace.path());
    policy["limits"] = json!({ "processes": 64 });
    let run = sandboxed_keeping_cgroup(&policy, &[PYTHON, "-c", BOUNDED_FORK_BOMB]);
    assert!(run.status.success(), "{}", run.describe());
    let report: Vec<&str> = run.stdout.split_whitespace().collect();
    let ["forks", forks, "error", error] = report[..] else {
        panic!("unexpected output: {}", run.describe());
    };
    assert_eq!(error, "EAGAIN", "{}", run.describe());
    assert!(
        forks.parse::<u32>().unwrap() < 64,
        "{forks} forks under a limit of 64: {}",
        run.describe()
    );
    let processes = &run.applied()["processes"];
    assert_eq!(
        processes["enforced_by"],
        expected_process_layer(),
        "{processes}"
    );
    assert_eq!(processes["limit"], 64);
    // The host can still start processes.
    assert!(Command::new("true").status().unwrap().success());

    if let Some(group) = processes["cgroup"].as_str() {
        let group = Path::new(group);
        assert_eq!(
            std::fs::read_to_string(group.join("pids.max"))
                .unwrap()
                .trim(),
            "64"
        );
        cgroup::remove_run_cgroup(run.pid);
        assert!(!group.exists(), "{} is still there", group.display());
    }
}

#[test]
fn the_status_line_says_whether_the_process_limit_is_enforced() {
    require_process_limit!();
    let workspace = tempfile::tempdir().unwrap();
    let limited = sandboxed(&policy_in(workspace.path()), &["true"]);
    let processes = &limited.applied()["processes"];
    assert_eq!(
        processes["enforced_by"],
        expected_process_layer(),
        "{processes}"
    );
    assert_eq!(processes["limit"], 4096, "{processes}");
    assert!(processes["reason"].is_null(), "{processes}");

    let mut policy = policy_in(workspace.path());
    policy["limits"] = json!({ "processes": null });
    let unlimited = sandboxed(&policy, &["true"]);
    let processes = &unlimited.applied()["processes"];
    assert_eq!(processes["enforced_by"], "not_enforced", "{processes}");
    assert!(processes["cgroup"].is_null(), "{processes}");
    assert!(
        processes["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no process limit")),
        "{processes}"
    );
}

#[test]
fn a_run_cgroup_left_behind_is_swept() {
    require_process_limit!();
    let workspace = tempfile::tempdir().unwrap();
    let run = sandboxed_keeping_cgroup(&policy_in(workspace.path()), &["true"]);
    let Some(group) = run.applied()["processes"]["cgroup"].as_str() else {
        eprintln!("SKIPPED: the process limit is not a cgroup here (not root)");
        return;
    };
    let group = Path::new(group);
    assert!(group.is_dir(), "{}", run.describe());
    assert_eq!(cgroup::run_cgroup_dir(run.pid).as_deref(), Some(group));
    cgroup::sweep_stale_run_cgroups();
    assert!(!group.exists(), "{} survived the sweep", group.display());
}

fn libc_sigxcpu() -> i32 {
    nix::sys::signal::Signal::SIGXCPU as i32
}

#[test]
fn the_environment_is_scrubbed_to_the_allow_list_and_the_policys_own() {
    let workspace = tempfile::tempdir().unwrap();
    let mut policy = policy_in(workspace.path());
    policy["env"] = json!({ "SKILL_MODE": "fast" });
    let run = sandboxed(&policy, &["env"]);
    assert!(run.status.success(), "{}", run.describe());
    assert!(
        !run.stdout.contains("SKILLKERNEL_TEST_SECRET"),
        "{}",
        run.describe()
    );
    assert!(!run.stdout.contains("hunter2"), "{}", run.describe());
    assert!(
        run.stdout.lines().any(|l| l == "SKILL_MODE=fast"),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.lines().any(|l| l.starts_with("PATH=")),
        "{}",
        run.describe()
    );
}

#[test]
fn no_new_privs_and_seccomp_are_set_inside_and_the_program_leads_its_group() {
    let workspace = tempfile::tempdir().unwrap();
    let script = "import os\nprint(open('/proc/self/status').read())\n\
                  print('leader', os.getpgrp() == os.getpid())";
    let run = sandboxed(&policy_in(workspace.path()), &[PYTHON, "-c", script]);
    assert!(run.status.success(), "{}", run.describe());
    assert!(run.stdout.contains("NoNewPrivs:\t1"), "{}", run.describe());
    assert!(run.stdout.contains("Seccomp:\t2"), "{}", run.describe());
    assert!(run.stdout.contains("leader True"), "{}", run.describe());
    assert_eq!(run.applied()["no_new_privs"], true);
}

#[test]
fn a_child_of_the_program_cannot_leave_the_process_group() {
    let workspace = tempfile::tempdir().unwrap();
    // A forked child is not a group leader, so both calls would succeed
    // without the filter (and the child would outlive a group kill).
    for escape in ["os.setsid()", "os.setpgid(0, 0)"] {
        let script = format!(
            "import os\npid = os.fork()\nif pid == 0:\n    try:\n        {escape}\n        os._exit(0)\n\
             \x20   except PermissionError:\n        os._exit(3)\n\
             _, status = os.waitpid(pid, 0)\nprint('child', os.waitstatus_to_exitcode(status))"
        );
        let run = sandboxed(&policy_in(workspace.path()), &[PYTHON, "-c", &script]);
        assert!(run.status.success(), "{escape}: {}", run.describe());
        assert_eq!(run.stdout.trim(), "child 3", "{escape}: {}", run.describe());
    }
}

#[test]
fn setup_failures_exit_125_or_127_with_a_failed_status_line() {
    let bad = sandboxed(&json!({ "netwrok": true }), &["true"]);
    assert_eq!(bad.status.code(), Some(125), "{}", bad.describe());
    assert_eq!(bad.status_lines.len(), 1, "{}", bad.describe());
    assert_eq!(bad.status_lines[0]["event"], "failed");
    assert_eq!(bad.status_lines[0]["stage"], "policy");

    let workspace = tempfile::tempdir().unwrap();
    let missing = sandboxed(&policy_in(workspace.path()), &["no-such-program-xyz"]);
    assert_eq!(missing.status.code(), Some(127), "{}", missing.describe());
    assert_eq!(missing.status_lines[0]["stage"], "exec");
}
