//! `skillkernel config`: the merged configuration (system file → user file →
//! `--config` → environment) printed as TOML with secrets redacted, and
//! `--check` naming the file and key of an invalid file.

use std::path::Path;
use std::process::{Command, Output};

use harness::bin;

/// `skillkernel config args…` with the system file at `<dir>/system.toml`,
/// the user's at `<dir>/user/skillkernel/config.toml`, and `env` on top.
fn config(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin("skillkernel"))
        .arg("config")
        .args(args)
        .env("SKILLKERNEL_SYSTEM_CONFIG", dir.join("system.toml"))
        .env("XDG_CONFIG_HOME", dir.join("user"))
        .env_remove("SKILLKERNEL_CONFIG")
        .env_remove("SKILLKERNEL_LOG")
        .env_remove("SKILLKERNEL_MODEL_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("run skillkernel config")
}

fn layers() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("system.toml"),
        "[log]\nkeep = 2\nlevel = \"warn\"\n[models]\ndefault = \"from-system\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("user/skillkernel")).unwrap();
    std::fs::write(
        d.join("user/skillkernel/config.toml"),
        "[log]\nlevel = \"debug\"\n[models.ollama]\nhost = \"http://ops:hunter2@gpu-box:11434\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("explicit.toml"),
        "[models]\ndefault = \"from-explicit\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn config_prints_the_layers_merged_with_the_environment_on_top() {
    let dir = layers();
    let explicit = dir.path().join("explicit.toml");
    let out = config(
        dir.path(),
        &["--config", &explicit.to_string_lossy()],
        &[("SKILLKERNEL_MAX_TOKENS", "77")],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let value: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(value["log"]["keep"].as_integer(), Some(2), "system file");
    assert_eq!(value["log"]["level"].as_str(), Some("debug"), "user file");
    assert_eq!(value["models"]["default"].as_str(), Some("from-explicit"));
    assert_eq!(
        value["models"]["generation"]["max_tokens"].as_integer(),
        Some(77),
        "environment"
    );
    assert_eq!(
        value["limits"]["command_timeout_secs"].as_integer(),
        Some(600)
    );
    // The Ollama URL's credentials are redacted; the host is kept.
    assert_eq!(
        value["models"]["ollama"]["host"].as_str(),
        Some("http://***@gpu-box:11434")
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn config_check_lists_the_files_read() {
    let dir = layers();
    let out = config(dir.path(), &["--check"], &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("system.toml"), "{text}");
    assert!(text.contains("user/skillkernel/config.toml"), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
}

#[test]
fn config_check_fails_naming_the_file_and_key_of_an_invalid_file() {
    let dir = layers();
    std::fs::write(
        dir.path().join("user/skillkernel/config.toml"),
        "[log]\nrotaton = \"hourly\"\n",
    )
    .unwrap();
    let out = config(dir.path(), &["--check"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("user/skillkernel/config.toml") && stderr.contains("rotaton"),
        "{stderr}"
    );

    // A level the logger would refuse is caught here too.
    let out = config(
        layers().path(),
        &["--check"],
        &[("SKILLKERNEL_LOG", "verbose")],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verbose"),
        "{out:?}"
    );
}
