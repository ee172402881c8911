//! The binaries as a user runs them: `skillctl` against a live daemon,
//! `skillkernel install`.

use std::process::Command;

use harness::fake_ollama::{self, FakeOllama};
use harness::{bin, Daemon};

#[test]
fn skillctl_exec_streams_output_and_reports_failure_by_exit_code() {
    let daemon = Daemon::start(&[]);
    let ok = daemon.skillctl(&["exec", "!echo hello; echo warn >&2"]);
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&ok.stderr), "warn\n");

    let set = daemon.skillctl(&["exec", "%set x = 3\n%get x"]);
    assert_eq!(String::from_utf8_lossy(&set.stdout), "3\n");

    let failed = daemon.skillctl(&["exec", "%get nope"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("NameError"));

    let paged = daemon.skillctl(&["exec", "%help get"]);
    assert!(String::from_utf8_lossy(&paged.stdout).contains("%get NAME"));
}

/// A workflow run by `skillctl` with stdout piped (as `> file` or `| less`
/// do): stdout holds the answer once and no progress; the progress goes to
/// stderr, once, in its last state (stderr is not a terminal either). The
/// fake Ollama answers every phase with the same text, so a phase other
/// than the output leaking to stdout would show as a repeat.
#[test]
fn skillctl_to_a_pipe_prints_a_workflow_answer_once_and_progress_on_stderr() {
    let mut script = fake_ollama::Config::default();
    script.chat.pieces = ["Yes", ", adopt", " it", "."].map(str::to_owned).to_vec();
    let fake = FakeOllama::start_blocking(script);
    let dir = tempfile::tempdir().unwrap();
    let skills = dir.path().join("skills");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/skills/pros-cons/skill.yaml");
    std::fs::create_dir_all(skills.join("pros-cons")).unwrap();
    std::fs::copy(example, skills.join("pros-cons/skill.yaml")).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n",
            skills,
            dir.path().join("user-skills")
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--ollama-host",
        &fake.url(),
        "--model",
        "llama3.2:latest@ollama",
    ]);
    let answer = "Yes, adopt it.";

    let ran = daemon.skillctl(&["skill", "run", "pros-cons", "--input", "A four-day week"]);
    let (out, err) = (
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr),
    );
    assert!(ran.status.success(), "{out}\n{err}");
    assert_eq!(
        out,
        format!("{answer}\n"),
        "the answer alone, once; stderr: {err}"
    );
    let progress_once = |err: &str| {
        assert_eq!(err.matches("pros-cons@1.0.0:").count(), 1, "{err}");
        for phase in ["Pros", "Cons", "Verdict"] {
            assert_eq!(err.matches(&format!("✓ {phase} —")).count(), 1, "{err}");
        }
        assert!(!err.contains('▶'), "only the last state: {err}");
    };
    progress_once(&err);

    let ran = daemon.skillctl(&["exec", "%%run pros-cons\nA four-day week"]);
    let (out, err) = (
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr),
    );
    assert!(ran.status.success(), "{out}\n{err}");
    assert_eq!(out.matches(answer).count(), 1, "{out}");
    assert!(!out.contains("pros-cons@") && !out.contains('✓'), "{out}");
    progress_once(&err);
}

#[test]
fn skillctl_info_prints_kernel_info() {
    let daemon = Daemon::start(&[]);
    let out = daemon.skillctl(&["info"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("skillkernel "), "{text}");
    assert!(text.contains("language: skill"));
    let json = daemon.skillctl(&["info", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["implementation"], "skillkernel");
}

#[test]
fn skillctl_without_existing_finds_the_newest_skillkernel_connection_file() {
    let runtime = tempfile::tempdir().unwrap();
    let mut daemon = Command::new(bin("skillkernel"))
        .arg("start")
        .env("JUPYTER_RUNTIME_DIR", runtime.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The daemon prints the path of the file it created. Reading only the
    // first line and closing the pipe also proves a closed stdout does not
    // kill the daemon.
    let mut line = String::new();
    let stdout = daemon.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert!(line.starts_with("Connection file: "), "{line}");
    let created = line.trim_start_matches("Connection file: ").trim();
    assert!(created.starts_with(&runtime.path().display().to_string()));
    let out = Command::new(bin("skillctl"))
        .args(["exec", "!echo found"])
        .env("JUPYTER_RUNTIME_DIR", runtime.path())
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "found\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skillctl_without_a_kernel_explains_what_to_do() {
    let runtime = tempfile::tempdir().unwrap();
    let out = Command::new(bin("skillctl"))
        .args(["info"])
        .env("JUPYTER_RUNTIME_DIR", runtime.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skillkernel start"));
}

#[test]
fn install_writes_a_kernelspec_jupyter_can_launch() {
    let prefix = tempfile::tempdir().unwrap();
    let out = Command::new(bin("skillkernel"))
        .args(["install", "--prefix"])
        .arg(prefix.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec_path = prefix
        .path()
        .join("share/jupyter/kernels/skillkernel/kernel.json");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let argv0 = spec["argv"][0].as_str().unwrap();
    assert!(std::path::Path::new(argv0).is_absolute());
    assert!(std::path::Path::new(argv0).exists());
    assert_eq!(spec["argv"][1], "start");
    assert_eq!(spec["argv"][3], "{connection_file}");
    assert_eq!(spec["display_name"], "Skill Kernel");
}

#[test]
fn packaged_kernelspec_template_matches_what_install_writes() {
    let prefix = tempfile::tempdir().unwrap();
    let status = Command::new(bin("skillkernel"))
        .args(["install", "--prefix"])
        .arg(prefix.path())
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let installed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            prefix
                .path()
                .join("share/jupyter/kernels/skillkernel/kernel.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let argv0 = std::path::PathBuf::from(installed["argv"][0].as_str().unwrap());
    let bindir = argv0.parent().unwrap().to_string_lossy().into_owned();
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/kernelspec/kernel.json.in"),
    )
    .unwrap();
    let packaged: serde_json::Value =
        serde_json::from_str(&template.replace("@BINDIR@", &bindir)).unwrap();
    assert_eq!(packaged, installed);
}

#[test]
fn install_targets_the_user_dir_or_the_active_environment() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(bin("skillkernel"))
        .args(["install", "--user"])
        .env("JUPYTER_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(data.path().join("kernels/skillkernel/kernel.json").exists());

    let venv = tempfile::tempdir().unwrap();
    let out = Command::new(bin("skillkernel"))
        .args(["install", "--sys-prefix"])
        .env("VIRTUAL_ENV", venv.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(venv
        .path()
        .join("share/jupyter/kernels/skillkernel/kernel.json")
        .exists());

    let both = Command::new(bin("skillkernel"))
        .args(["install", "--user", "--sys-prefix"])
        .output()
        .unwrap();
    assert!(!both.status.success(), "the locations exclude each other");
}
