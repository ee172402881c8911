//! The service files and the .deb: systemd units pass `systemd-analyze
//! verify`, the launchd plists parse and start the daemon like the units
//! (minus `--daemon`), and `packaging/build-deb` builds a package whose
//! files, control data, binaries, default config and kernelspec are right.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `systemd-analyze`, which `.ci/run` installs when it is missing.
fn systemd_analyze() -> Command {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: apt-get install --no-install-recommends systemd (.ci/run does)"
    );
    Command::new("systemd-analyze")
}

/// A copy of `unit` in a fresh directory with `/usr/bin/skillkernel`
/// replaced by the built binary (verify checks that ExecStart exists).
fn unit_copy(unit: &str, edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(repo().join(unit)).expect("unit file");
    let built = bin("skillkernel");
    let text = edit(text.replace("/usr/bin/skillkernel", &built.to_string_lossy()));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skillkernel.service");
    std::fs::write(&path, text).expect("write unit copy");
    (dir, path)
}

/// What `systemd-analyze verify` says about the unit: its exit status and
/// the lines naming the unit. Bad values and unknown keys are only
/// warnings (exit 0), so a clean unit is one with neither.
fn verify(unit: &Path, user: bool) -> (bool, Vec<String>) {
    let mut command = systemd_analyze();
    let runtime = tempfile::tempdir().expect("tempdir");
    if user {
        // The user manager needs a runtime directory, which root in a
        // container or CI does not have.
        command.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
    }
    let output = command
        .arg("verify")
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    let name = unit.file_name().unwrap().to_string_lossy().into_owned();
    let complaints = String::from_utf8_lossy(&output.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&output.stdout).lines())
        .filter(|line| line.contains(&name))
        .map(str::to_owned)
        .collect();
    (output.status.success(), complaints)
}

#[test]
fn system_unit_passes_systemd_analyze_verify() {
    let (_dir, unit) = unit_copy("systemd/skillkernel.service", |t| t);
    let (ok, complaints) = verify(&unit, false);
    assert!(ok && complaints.is_empty(), "{complaints:?}");
}

#[test]
fn user_unit_passes_systemd_analyze_user_verify() {
    let (_dir, unit) = unit_copy("systemd/user/skillkernel.service", |t| t);
    let (ok, complaints) = verify(&unit, true);
    assert!(ok && complaints.is_empty(), "{complaints:?}");
}

#[test]
fn verify_reports_a_broken_unit() {
    // The check above is only worth something if it can fail.
    let (_dir, unit) = unit_copy("systemd/skillkernel.service", |t| {
        t.replace("Type=forking", "Type=forkng")
    });
    let (_, complaints) = verify(&unit, false);
    assert!(
        complaints.iter().any(|l| l.contains("forkng")),
        "{complaints:?}"
    );
    let (_dir, unit) = unit_copy("systemd/user/skillkernel.service", |t| {
        t.replace("ExecStart=", "ExecStrat=")
    });
    let (ok, complaints) = verify(&unit, true);
    assert!(!ok || !complaints.is_empty(), "{complaints:?}");
}

/// The `--flags` of a start command line.
fn flags<'a>(args: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    args.into_iter()
        .filter(|a| a.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

/// The words of the unit's `ExecStart=` (no quoting is used in it).
fn exec_start(unit: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(unit)).expect("unit file");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{unit} has no ExecStart="));
    line.split_whitespace().map(str::to_owned).collect()
}

/// A plist's `ProgramArguments`, read with Python's plistlib.
fn program_arguments(plist: &Path) -> Vec<String> {
    let script = "import json, plistlib, sys\n\
                  print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))['ProgramArguments']))";
    let out = run(Command::new("python3").args(["-c", script]).arg(plist));
    serde_json::from_str(&stdout(&out)).expect("ProgramArguments as JSON")
}

#[test]
fn launchd_plists_start_like_the_systemd_units_without_daemon() {
    let system = exec_start("systemd/skillkernel.service");
    let user = exec_start("systemd/user/skillkernel.service");
    assert_eq!(system[1], "start");
    let mut unit_flags = flags(system.iter().map(String::as_str));
    assert!(unit_flags.remove("--daemon"), "{system:?}");
    assert_eq!(
        flags(user.iter().map(String::as_str)),
        flags(system.iter().map(String::as_str))
    );
    for plist in [
        "launchd/org.skillkernel.daemon.plist",
        "launchd/org.skillkernel.agent.plist",
    ] {
        let args = program_arguments(&repo().join(plist));
        assert!(args[0].ends_with("/skillkernel"), "{plist}: {args:?}");
        assert_eq!(args[1], "start", "{plist}");
        assert_eq!(
            flags(args.iter().map(String::as_str)),
            unit_flags,
            "{plist}"
        );
        // Every flag takes one value, as in the unit.
        assert_eq!(args.len(), 2 + 2 * unit_flags.len(), "{plist}: {args:?}");
    }
}

/// Builds the .deb from the debug binaries into `out`.
fn build_deb(out: &Path) -> PathBuf {
    let bin_dir = bin("skillkernel").parent().unwrap().to_owned();
    let output = run(Command::new(repo().join("packaging/build-deb"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(out)
        // Debug binaries are large; xz would spend minutes on them.
        .args(["--compression", "gzip:1"]));
    PathBuf::from(stdout(&output).trim())
}

#[test]
fn deb_ships_binaries_units_config_and_kernelspec() {
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(work.path());
    assert!(deb.is_file(), "{}", deb.display());
    assert!(deb.starts_with(work.path()));

    let version = stdout(&run(Command::new(bin("skillkernel")).arg("--version")));
    let version = version.split_whitespace().nth(1).unwrap().to_owned();
    let arch = stdout(&run(Command::new("dpkg").arg("--print-architecture")));
    let info = stdout(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    for field in [
        "Package: skillkernel".to_owned(),
        format!("Version: {version}"),
        format!("Architecture: {}", arch.trim()),
        "Maintainer: ".to_owned(),
        "Depends: libc6".to_owned(),
        "Description: ".to_owned(),
    ] {
        assert!(info.contains(&field), "no {field:?} in\n{info}");
    }
    for script in ["conffiles", "postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "no {script} in\n{info}");
    }

    let contents = stdout(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/skillkernel"),
        ("-rwxr-xr-x", "./usr/bin/skillctl"),
        ("-rw-r--r--", "./lib/systemd/system/skillkernel.service"),
        ("-rw-r--r--", "./usr/lib/systemd/user/skillkernel.service"),
        ("-rw-r--r--", "./etc/skillkernel/config.toml"),
        (
            "-rw-r--r--",
            "./usr/share/jupyter/kernels/skillkernel/kernel.json",
        ),
        ("-rw-r--r--", "./usr/share/doc/skillkernel/operations.md"),
        ("-rw-r--r--", "./usr/share/doc/skillkernel/copyright"),
    ] {
        let line = contents
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{contents}"));
        assert!(
            line.starts_with(mode) && line.contains("root/root"),
            "{line}"
        );
    }

    // The control archive: conffiles and maintainer scripts that parse.
    let control = work.path().join("DEBIAN");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/skillkernel/config.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(control.join(script)));
    }

    // Unpacked, the binaries run and the shipped config is valid.
    let root = work.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let shipped = stdout(&run(
        Command::new(root.join("usr/bin/skillkernel")).arg("--version")
    ));
    assert_eq!(shipped.trim(), format!("skillkernel {version}"));
    run(Command::new(root.join("usr/bin/skillctl")).arg("--version"));
    let config = root.join("etc/skillkernel/config.toml");
    let check = stdout(&run(Command::new(root.join("usr/bin/skillkernel"))
        .args(["config", "--check", "--config"])
        .arg(&config)
        .env("SKILLKERNEL_SYSTEM_CONFIG", "")
        .env("XDG_CONFIG_HOME", work.path().join("no-config"))));
    assert!(
        check.contains(&config.display().to_string()) && check.contains("configuration OK"),
        "{check}"
    );
    for (unit, packaged) in [
        (
            "systemd/skillkernel.service",
            "lib/systemd/system/skillkernel.service",
        ),
        (
            "systemd/user/skillkernel.service",
            "usr/lib/systemd/user/skillkernel.service",
        ),
        ("packaging/config.toml", "etc/skillkernel/config.toml"),
    ] {
        assert_eq!(
            std::fs::read(repo().join(unit)).unwrap(),
            std::fs::read(root.join(packaged)).unwrap(),
            "{packaged}"
        );
    }

    // The kernelspec is what `skillkernel install` writes, for /usr/bin.
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("usr/share/jupyter/kernels/skillkernel/kernel.json"))
            .unwrap(),
    )
    .expect("kernel.json is JSON");
    assert_eq!(
        spec["argv"],
        serde_json::json!(["/usr/bin/skillkernel", "start", "-f", "{connection_file}"])
    );
    let prefix = work.path().join("prefix");
    run(Command::new(bin("skillkernel"))
        .args(["install", "--prefix"])
        .arg(&prefix));
    let mut installed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(prefix.join("share/jupyter/kernels/skillkernel/kernel.json"))
            .unwrap(),
    )
    .unwrap();
    installed["argv"][0] = "/usr/bin/skillkernel".into();
    assert_eq!(spec, installed);
}
