//! Log files of a real daemon: `--log-dir` writes `skillkernel.log`, rotated
//! files left from earlier runs are lz4-compressed and pruned to
//! `[log] keep` at start, a size limit turned on by SIGUSR1 rotates the
//! live file, the sandbox audit log rotates by size too, a full disk costs
//! log lines (counted, said once) but no cells, JSON lines parse, and an
//! unusable directory stops the start with the directory named.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{bin, run, Daemon};
use serde_json::Value;

/// Waits until `check` holds, up to 20 s; the log writer and the
/// compression thread work in the background.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A daemon logging into `<tmp>/logs`, with `prepare` run on that
/// directory before the start.
fn daemon_with_logs(args: &[&str], prepare: impl FnOnce(&Path)) -> (Daemon, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    daemon_in(dir, args, prepare)
}

fn daemon_in(
    dir: tempfile::TempDir,
    args: &[&str],
    prepare: impl FnOnce(&Path),
) -> (Daemon, PathBuf) {
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    prepare(&logs);
    let connection_file = dir.path().join("kernel-test.json");
    let log_dir = logs.to_string_lossy().into_owned();
    let mut all = vec!["--log-dir", &log_dir];
    all.extend_from_slice(args);
    let daemon = Daemon::start_in(dir, connection_file, &all);
    (daemon, logs)
}

#[test]
fn log_dir_gets_skillkernel_log_with_the_serving_line() {
    let (daemon, logs) = daemon_with_logs(&[], |_| {});
    let log = logs.join("skillkernel.log");
    eventually("the serving line in skillkernel.log", || {
        read(&log).contains("skillkernel serving")
    });
    // Nothing goes to stderr once logging has a file.
    assert!(!daemon.log().contains("skillkernel serving"));
}

#[test]
fn rotated_logs_are_compressed_and_pruned_to_keep() {
    let keep = 3;
    let old_text = "2020-01-01T00:00:00Z INFO an old run\n".repeat(50);
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("keep.toml");
    std::fs::write(&config, format!("[log]\nkeep = {keep}\n")).unwrap();
    let config = config.to_string_lossy().into_owned();
    let (_daemon, logs) = daemon_with_logs(&["--config", &config], |logs| {
        std::fs::write(logs.join("skillkernel.log.2020-01-01"), &old_text).unwrap();
        // keep + 2 older compressed files: with the one above, 3 must go.
        for day in 1..=keep + 2 {
            std::fs::write(
                logs.join(format!("skillkernel.log.2019-01-0{day}.lz4")),
                "x",
            )
            .unwrap();
        }
    });

    let compressed = logs.join("skillkernel.log.2020-01-01.lz4");
    eventually("the stale rotated file compressed", || {
        compressed.exists() && !logs.join("skillkernel.log.2020-01-01").exists()
    });
    let mut text = String::new();
    lz4_flex::frame::FrameDecoder::new(std::fs::File::open(&compressed).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, old_text);

    let rotated = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".lz4"))
            .collect();
        names.sort();
        names
    };
    eventually("retention down to keep", || rotated().len() == keep);
    assert_eq!(
        rotated(),
        [
            "skillkernel.log.2019-01-04.lz4",
            "skillkernel.log.2019-01-05.lz4",
            "skillkernel.log.2020-01-01.lz4"
        ]
    );
    // The live file is left alone.
    eventually("the serving line in the live file", || {
        read(&logs.join("skillkernel.log")).contains("skillkernel serving")
    });
}

#[test]
fn json_log_lines_parse_as_json() {
    let (_daemon, logs) = daemon_with_logs(&["--log-format", "json"], |_| {});
    let log = logs.join("skillkernel.log");
    eventually("the serving line", || {
        read(&log).contains("skillkernel serving")
    });
    let text = read(&log);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let serving = lines
        .iter()
        .find(|l| l["fields"]["message"] == "skillkernel serving")
        .expect("serving line");
    assert_eq!(serving["level"], "INFO");
    assert!(serving["fields"]["shell"].is_u64(), "{serving}");
}

#[test]
fn an_unusable_log_dir_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a directory should be: unusable even for root.
    std::fs::write(dir.path().join("file"), "").unwrap();
    let log_dir = dir.path().join("file/logs");
    let output = Command::new(bin("skillkernel"))
        .arg("start")
        .arg("-f")
        .arg(dir.path().join("kernel-test.json"))
        .arg("--log-dir")
        .arg(&log_dir)
        .env("SKILLKERNEL_SYSTEM_CONFIG", "")
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("SKILLKERNEL_STATE_DIR", dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&log_dir.display().to_string()) && stderr.contains("log directory"),
        "{stderr}"
    );
    assert!(!dir.path().join("kernel-test.json").exists());
}

/// Requests the kernel answers with an error and a logged warning: each
/// writes one log line.
async fn warn_lines(daemon: &Daemon, count: usize) {
    let mut client = daemon.client().await;
    for _ in 0..count {
        harness::invalid_execute_request(&mut client).await;
    }
}

fn names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

fn decompress(path: &Path) -> String {
    let mut text = String::new();
    lz4_flex::frame::FrameDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_turns_on_size_rotation_whose_files_are_compressed_and_pruned() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("log.toml");
    std::fs::write(&config, "[log]\nkeep = 2\n").unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let (daemon, logs) = daemon_with_logs(&["--config", &config_arg], |_| {});
    warn_lines(&daemon, 40).await;
    eventually("the warnings in the live file", || {
        read(&logs.join("skillkernel.log"))
            .matches("invalid execute_request")
            .count()
            == 40
    });
    assert_eq!(
        names(&logs, "skillkernel.log.").len(),
        1,
        "no size limit yet: one file"
    );

    // 5 KiB files from now on.
    let limit = 5 * 1024;
    std::fs::write(&config, "[log]\nkeep = 2\nmax_size_mb = 0.0048828125\n").unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGUSR1);
    eventually("the reload applied", || {
        read(&logs.join("skillkernel.log")).contains("log.max_size_mb")
    });
    warn_lines(&daemon, 150).await;
    let compressed = || -> Vec<String> {
        names(&logs, "skillkernel.log.")
            .into_iter()
            .filter(|n| n.ends_with(".lz4"))
            .collect()
    };
    // Rotated files: compressed at once, and no more than `keep` of them.
    eventually("two compressed files and nothing else rotated", || {
        let all = names(&logs, "skillkernel.log.");
        compressed().len() == 2 && all.len() == 3
    });
    for name in compressed() {
        let text = decompress(&logs.join(&name));
        assert!(text.len() <= limit, "{name}: {} bytes", text.len());
        assert!(
            text.ends_with('\n') && text.lines().all(|l| l.contains(" skillkernel")),
            "{name}: whole lines"
        );
    }
    let live = std::fs::read_link(logs.join("skillkernel.log")).unwrap();
    let live_len = std::fs::metadata(logs.join(&live)).unwrap().len();
    assert!(live_len <= limit as u64, "{}: {live_len}", live.display());
    assert!(
        compressed()
            .iter()
            .all(|n| n.as_str() < live.to_str().unwrap()),
        "the live file is the newest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_audit_log_rotates_by_size_and_its_old_files_are_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("audit.toml");
    // 1 KiB audit files, three kept.
    std::fs::write(
        &config,
        "[log]\naudit_max_size_mb = 0.0009765625\naudit_keep = 3\n",
    )
    .unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let (daemon, _logs) = daemon_in(dir, &["--config", &config_arg], |_| {});
    let mut client = daemon.client().await;
    // Positive control: an allowed read runs.
    let allowed = run(&mut client, "!cat /usr/lib/os-release").await;
    assert_eq!(allowed.status(), "ok", "{:?}", allowed.reply.content);
    for _ in 0..30 {
        let denied = run(&mut client, "!cat /etc/shadow").await;
        assert_eq!(denied.status(), "error");
    }
    let audit_files = || names(&state, "sandbox-audit.jsonl");
    // Moved-aside audit files settle for 5 s; passes run every 10 s.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let all = audit_files();
        if all.iter().filter(|n| n.ends_with(".lz4")).count() == 3 && all.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compressed and pruned: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for name in audit_files() {
        let path = state.join(&name);
        let text = if name.ends_with(".lz4") {
            decompress(&path)
        } else {
            read(&path)
        };
        assert!(text.len() <= 1024, "{name}: {} bytes", text.len());
        for line in text.lines() {
            let event: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
            assert!(event["event"].is_string(), "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_costs_log_lines_said_once_but_no_cells() {
    let today = format!("skillkernel.log.{}", chrono::Utc::now().format("%Y-%m-%d"));
    // The file of today's lines is on a "disk" that is always full.
    let (daemon, logs) = daemon_with_logs(&[], |logs| {
        std::os::unix::fs::symlink("/dev/full", logs.join(&today)).unwrap();
        std::os::unix::fs::symlink(&today, logs.join("skillkernel.log")).unwrap();
    });
    assert!(Path::new("/dev/full").exists());
    let mut client = daemon.client().await;
    for _ in 0..5 {
        let ran = run(&mut client, "%status").await;
        assert_eq!(ran.status(), "ok");
    }
    warn_lines(&daemon, 5).await;
    let log_status = || -> Value {
        let out = daemon.skillctl(&["status", "--json"]);
        let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        status["telemetry"]
            .as_array()
            .and_then(|t| t.iter().find(|o| o["name"] == "log").cloned())
            .unwrap_or_else(|| panic!("no log outlet: {status:#}"))
    };
    eventually("the status shows log lines dropped", || {
        log_status()["dropped"].as_u64() >= Some(5)
    });
    let outlet = log_status();
    assert!(
        outlet["failing"]
            .as_str()
            .is_some_and(|why| why.contains("No space left")),
        "{outlet:#}"
    );
    let shown = harness::shown(&run(&mut client, "%status").await);
    assert!(
        shown.contains("| log file |") && shown.contains("dropping now"),
        "{shown}"
    );
    let said = daemon.log().matches("cannot write the log file").count();
    assert_eq!(said, 1, "said once on stderr:\n{}", daemon.log());

    // Space again: the next line gets through, followed by what was lost.
    std::fs::remove_file(logs.join(&today)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    warn_lines(&daemon, 1).await;
    eventually("the loss said in the log", || {
        read(&logs.join(&today)).contains("log lines were lost")
    });
    assert!(log_status().get("failing").is_none(), "{:#}", log_status());
}
