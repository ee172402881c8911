//! Toolchains installed in the home directory run in the sandbox — a
//! version manager's install found through `PATH`, a virtualenv made by
//! the test (whose base interpreter lives wherever the machine's does) —
//! while the rest of the home directory, its secrets first, stays shut.
//! A daemon with a home directory of the test's own, driven by `!command`
//! cells.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use harness::{run, shown, Daemon, Launch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_toolchains_run_and_the_rest_of_home_stays_shut() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // A toolchain as a version manager lays it out: a program whose
    // data lives beside it in its install.
    let version = home.join(".tool/versions/1.0");
    std::fs::create_dir_all(version.join("bin")).unwrap();
    std::fs::create_dir_all(version.join("share")).unwrap();
    std::fs::write(
        version.join("share/greeting.txt"),
        "hello from the home toolchain\n",
    )
    .unwrap();
    let program = version.join("bin/greet");
    std::fs::write(
        &program,
        "#!/bin/sh\nexec cat \"$(dirname \"$0\")/../share/greeting.txt\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A real virtualenv of the machine's python3.
    let venv = home.join("projects/app/.venv");
    let made = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    // What must stay shut.
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY\n").unwrap();
    std::fs::write(home.join("notes.txt"), "private notes\n").unwrap();

    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin",
        version.join("bin").display(),
        venv.join("bin").display()
    );
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let daemon = Daemon::start_with(
        Launch {
            cwd: Some(workspace),
            env: vec![
                ("HOME".into(), home.display().to_string()),
                ("PATH".into(), path),
            ],
            ..Launch::default()
        },
        &[],
    );
    let mut client = daemon.client().await;

    let greet = run(&mut client, "!greet").await;
    assert_eq!(greet.status(), "ok", "{}\n{}", shown(&greet), daemon.log());
    assert!(shown(&greet).contains("hello from the home toolchain"));
    let python = run(
        &mut client,
        "!python -c \"import json, sys; print('venv', sys.prefix)\"",
    )
    .await;
    assert_eq!(
        python.status(),
        "ok",
        "{}\n{}",
        shown(&python),
        daemon.log()
    );
    assert!(shown(&python).contains("venv"), "{}", shown(&python));
    assert!(shown(&python).contains(".venv"), "{}", shown(&python));

    for probe in ["!cat ~/.ssh/id_ed25519", "!cat ~/notes.txt", "!ls ~"] {
        let denied = run(&mut client, probe).await;
        assert_eq!(denied.status(), "error", "{probe}: {}", shown(&denied));
        let text = shown(&denied);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("private notes"),
            "{probe}: {text}"
        );
    }
    // A program installed where the sandbox does not look fails with
    // the folder and the setting that would open it named.
    let elsewhere = home.join("apps/tool/bin");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(&program, elsewhere.join("run")).unwrap();
    let refused = run(&mut client, "!~/apps/tool/bin/run").await;
    assert_eq!(refused.status(), "error", "{}", shown(&refused));
    let said = shown(&refused) + &refused.reply.content["traceback"].to_string();
    assert!(said.contains("apps/tool"), "{said}");
    assert!(said.contains("read = ["), "{said}");
    assert!(said.contains("[sandbox]"), "{said}");

    // `%sandbox status` and `skillctl sandbox status` name the roots.
    let status = run(&mut client, "%sandbox status").await;
    assert!(
        shown(&status).contains(&version.display().to_string()),
        "{}",
        shown(&status)
    );
    let listed = daemon.skillctl(&["sandbox", "status"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&version.display().to_string()),
        "{listed:?}"
    );

    // The grants were logged once, naming the install roots.
    let log = daemon.log();
    assert!(log.contains("toolchains"), "{log}");
    assert!(log.contains(&Path::new(".tool/versions/1.0").display().to_string()));
}
