//! The shipped systemd units, run as systemd would run them: their
//! `ExecStartPre=`/`ExecStart=` lines (with paths moved into a temporary
//! root), readiness when the launcher exits, `PIDFile=` naming the live
//! daemon, the `ExecReload=` lines, and SIGTERM (systemd's stop signal).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::bin;
use harness::detached::{alive, wait_until};
use skillctl::KernelClient;
use skillkernel_protocol::ConnectionInfo;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_owned()
}

/// Every value of `key` in the unit, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

fn substitute(line: &str, map: &[(&str, String)]) -> String {
    map.iter()
        .fold(line.to_owned(), |line, (from, to)| line.replace(from, to))
}

/// Runs one command line the way systemd does (no shell; `-` prefix
/// ignored, as in `ExecStartPre=-…`).
fn run_line(line: &str, root: &Path) -> std::process::Output {
    let line = line.trim_start_matches('-');
    let mut words = line.split_whitespace();
    let program = words.next().expect("a command");
    Command::new(program)
        .args(words)
        .env("SKILLKERNEL_SYSTEM_CONFIG", "")
        .env("XDG_CONFIG_HOME", root.join("xdg"))
        .env_remove("SKILLKERNEL_STATE_DIR")
        .env_remove("SKILLKERNEL_PID_FILE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {line}: {e}"))
}

async fn start_reload_stop(unit_path: &str, map: impl Fn(&Path) -> Vec<(&'static str, String)>) {
    let unit = std::fs::read_to_string(repo().join(unit_path)).expect("unit file");
    let root = tempfile::tempdir().unwrap();
    let mut map = map(root.path());
    map.push((
        "/usr/bin/skillkernel",
        bin("skillkernel").display().to_string(),
    ));

    for pre in values(&unit, "ExecStartPre") {
        let out = run_line(&substitute(&pre, &map), root.path());
        assert!(out.status.success(), "{pre}: {out:?}");
    }
    let exec_start = values(&unit, "ExecStart");
    assert_eq!(exec_start.len(), 1, "one ExecStart line");
    assert!(
        exec_start[0].contains("--daemon"),
        "Type=forking needs --daemon"
    );
    assert_eq!(values(&unit, "Type"), ["forking"]);
    // The runtime directory is systemd's to create (RuntimeDirectory=).
    for (_, dir) in map
        .iter()
        .filter(|(_, d)| Path::new(d).starts_with(root.path()))
    {
        std::fs::create_dir_all(dir).unwrap();
    }
    let launcher = run_line(&substitute(&exec_start[0], &map), root.path());
    assert!(
        launcher.status.success(),
        "ExecStart failed: {}",
        String::from_utf8_lossy(&launcher.stderr)
    );

    let pid_file = PathBuf::from(substitute(&values(&unit, "PIDFile")[0], &map));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("PIDFile exists once the launcher has exited")
        .trim()
        .parse()
        .expect("a PID");
    assert!(alive(pid), "PIDFile names the live daemon");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("skillkernel"), "{cmdline}");

    let connection_file = exec_start[0]
        .split_whitespace()
        .skip_while(|w| *w != "--connection-file")
        .nth(1)
        .map(|f| PathBuf::from(substitute(f, &map)))
        .expect("the unit names its connection file");
    let info = ConnectionInfo::read(&connection_file).expect("connection file");
    let mut client = KernelClient::connect(&info).await.expect("connect");
    client
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("the kernel answers");

    let mut reload_map = map.clone();
    reload_map.push(("$MAINPID", pid.to_string()));
    for reload in values(&unit, "ExecReload") {
        let out = run_line(&substitute(&reload, &reload_map), root.path());
        assert!(out.status.success(), "{reload}: {out:?}");
    }
    let log_dir = exec_start[0]
        .split_whitespace()
        .skip_while(|w| *w != "--log-dir")
        .nth(1)
        .map(|d| PathBuf::from(substitute(d, &map)))
        .expect("the unit names its log directory");
    let log = || {
        std::fs::read_dir(&log_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(10), || log()
            .contains("configuration unchanged")),
        "ExecReload reached the daemon: {}",
        log()
    );
    assert!(alive(pid), "the same process after the reload");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(20), || !alive(pid)));
    assert!(!pid_file.exists(), "PIDFile removed at exit");
    assert!(log().contains("shutdown complete"));
}

#[tokio::test]
async fn the_system_unit_starts_a_ready_daemon_its_pidfile_names_and_reloads_and_stops_it() {
    start_reload_stop("systemd/skillkernel.service", |root| {
        vec![
            ("/run/skillkernel", root.join("run").display().to_string()),
            (
                "/var/lib/skillkernel",
                root.join("state").display().to_string(),
            ),
            (
                "/var/log/skillkernel",
                root.join("log").display().to_string(),
            ),
        ]
    })
    .await;
}

#[tokio::test]
async fn the_user_unit_starts_a_ready_daemon_its_pidfile_names_and_reloads_and_stops_it() {
    start_reload_stop("systemd/user/skillkernel.service", |root| {
        vec![
            ("%t", root.join("run").display().to_string()),
            ("%h", root.join("home").display().to_string()),
            ("%S", root.join("state").display().to_string()),
            ("%L", root.join("log").display().to_string()),
        ]
    })
    .await;
}
