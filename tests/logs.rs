//! Log files of a real daemon: `--log-dir` writes `skillkernel.log`, rotated
//! files left from earlier runs are lz4-compressed and pruned to
//! `[log] keep` at start, JSON lines parse, and an unusable directory stops
//! the start with the directory named.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{bin, Daemon};

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
