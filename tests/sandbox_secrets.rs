//! Secrets stay shut whatever else is granted: with the whole home
//! directory granted by `[sandbox] read`, a connection file and the state
//! folder inside the working directory, and a symlink into `~/.ssh`, no
//! `!command` cell or skill reads a key, the HMAC key or the audit log —
//! while, as controls, the same programs read the files beside them and
//! create files in the working directory. Once with the denied paths
//! masked in a mount namespace (the default), once with Landlock alone
//! (`mount_namespace = false`). A skill reaches a denied path only when
//! `[sandbox.trust]` names it with exactly that path. And the rest of
//! the escape corpus that is not a file: the daemon's process (`/proc/PID`
//! root and environment), the terminal (`TIOCSTI`) and the kernel's own
//! ports, each beside the same program doing allowed work.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use harness::{run, shown, Daemon, Launch};
use serde_json::Value;
use skillctl::{ExecuteOutcome, KernelClient};

struct Machine {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    workspace: PathBuf,
    config: PathBuf,
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn skill(skills: &Path, name: &str, file: &Path) {
    write(
        &skills.join(name).join("skill.yaml"),
        &format!(
            "name: {name}\nversion: 1.0.0\ndescription: Reads a file.\ntype: command\n\
             command: cat\nargs: [{file:?}]\npermissions:\n  read: [{file:?}]\n"
        ),
    );
}

fn machine(mount_namespace: bool) -> Machine {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (home, workspace) = (root.join("home"), root.join("ws"));
    write(&home.join(".ssh/id_ed25519"), "PRIVATE KEY\n");
    write(&home.join(".aws/credentials"), "AWS SECRET KEY\n");
    write(&home.join(".aws/config"), "region = eu-north-1\n");
    write(&home.join("private/token"), "PRIVATE TOKEN\n");
    write(&home.join("notes.txt"), "home notes\n");
    write(&workspace.join("notes.txt"), "workspace notes\n");
    std::fs::create_dir_all(workspace.join("sub")).unwrap();
    std::os::unix::fs::symlink(home.join(".ssh"), workspace.join("keys")).unwrap();
    let skills = root.join("skills");
    skill(&skills, "aws-region", &home.join(".aws/config"));
    skill(&skills, "aws-region-copy", &home.join(".aws/config"));
    skill(&skills, "aws-keys", &home.join(".aws/credentials"));
    skill(&skills, "home-notes", &home.join("notes.txt"));
    write(&workspace.join("probe.py"), PROBE);
    write(
        &skills.join("port-opener/skill.yaml"),
        "name: port-opener\nversion: 1.0.0\ndescription: Connects.\ntype: command\n\
         command: /usr/bin/python3\nargs: [probe.py, connect, \"{{input}}\"]\n\
         permissions:\n  network: true\n",
    );
    let config = root.join("config.toml");
    write(
        &config,
        &format!(
            "[skills]\ntrust = \"all\"\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n\
             [sandbox]\nread = [{home:?}]\ndeny = [\"~/private\"]\nmount_namespace = {mount_namespace}\n\
             [sandbox.trust]\naws-region = [\"~/.aws/config\"]\n",
            root.join("user-skills"),
        ),
    );
    Machine {
        _dir: dir,
        root,
        home,
        workspace,
        config,
    }
}

/// What a program may try beyond files: `connect PORT` (TCP to
/// 127.0.0.1), `tiocsti` (push a character into the controlling
/// terminal, then, as the control, an ioctl on its own pipe).
const PROBE: &str = r#"
import fcntl, os, socket, struct, sys, termios
if sys.argv[1] == "connect":
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5).close()
    print("connected")
elif sys.argv[1] == "tiocsti":
    for target in ("/dev/tty", 0, 1, 2):
        try:
            fd = os.open(target, os.O_RDWR) if isinstance(target, str) else target
            for ch in (b"x", b"\n"):
                fcntl.ioctl(fd, termios.TIOCSTI, ch)
            print("TIOCSTI WORKED on", target)
        except OSError as e:
            print("refused", target, e.errno)
    r, w = os.pipe()
    os.write(w, b"abc")
    n = struct.unpack("i", fcntl.ioctl(r, termios.FIONREAD, b"\0\0\0\0"))[0]
    print("own pipe holds", n)
"#;

/// The daemon works in the workspace, with its connection file and its
/// state folder there too.
fn start(m: &Machine) -> Daemon {
    start_on(m, None)
}

/// [`start`], with `terminal` as the daemon's controlling terminal.
fn start_on(m: &Machine, terminal: Option<PathBuf>) -> Daemon {
    let daemon_dir = tempfile::tempdir_in(&m.root).unwrap();
    let launch = Launch {
        cwd: Some(m.workspace.clone()),
        env: vec![
            ("HOME".into(), m.home.display().to_string()),
            (
                "SKILLKERNEL_TEST_SECRET".into(),
                "hunter2-daemon-env".into(),
            ),
        ],
        controlling_terminal: terminal,
        ..Launch::default()
    };
    let state = m.workspace.join("state");
    Daemon::start_in_with(
        daemon_dir,
        m.workspace.join("kernel-ws.json"),
        &[
            "--config",
            m.config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        launch,
    )
}

/// A probe: whatever it ends with, it shows none of `secrets`.
async fn probe(client: &mut KernelClient, code: &str, secrets: &[&str]) -> ExecuteOutcome {
    let outcome = run(client, code).await;
    let text = shown(&outcome) + &outcome.reply.content.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "{code} showed {secret}: {text}");
    }
    outcome
}

/// A control: it succeeds and shows `expected`.
async fn control(client: &mut KernelClient, code: &str, expected: &str, daemon: &Daemon) {
    let outcome = run(client, code).await;
    assert_eq!(
        outcome.status(),
        "ok",
        "{code}: {}\n{}",
        shown(&outcome),
        daemon.log()
    );
    assert!(
        shown(&outcome).contains(expected),
        "{code}: {}",
        shown(&outcome)
    );
}

fn audit(m: &Machine) -> Vec<Value> {
    std::fs::read_to_string(m.workspace.join("state/sandbox-audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn secrets_stay_shut(mount_namespace: bool) {
    let m = machine(mount_namespace);
    let daemon = start(&m);
    let mut client = daemon.client().await;
    let key = daemon.info.key.clone();
    assert!(key.len() >= 16, "{key}");
    let secrets = ["PRIVATE KEY", "AWS SECRET", "PRIVATE TOKEN", key.as_str()];

    // Controls: the grants work around what stays shut.
    control(&mut client, "!cat notes.txt", "workspace notes", &daemon).await;
    control(&mut client, "!cat ~/notes.txt", "home notes", &daemon).await;
    control(
        &mut client,
        "!echo made > sub/f && cat sub/f",
        "made",
        &daemon,
    )
    .await;
    if mount_namespace {
        // Masks leave the working directory's own top level whole.
        control(
            &mut client,
            "!echo top > top.txt && cat top.txt",
            "top",
            &daemon,
        )
        .await;
    }

    for code in [
        "!cat kernel-ws.json",
        "!cat ~/.ssh/id_ed25519",
        "!cat keys/id_ed25519",
        "!cat ~/.aws/credentials",
        "!cat ~/.aws/config",
        "!cat ~/private/token",
        "!cat state/sandbox-audit.jsonl",
        "!grep -r . ~/.ssh ~/.aws ~/private",
        "!cat /proc/self/root$HOME/.ssh/id_ed25519",
    ] {
        probe(&mut client, code, &secrets).await;
    }
    // Landlock alone refuses them, named as kept shut.
    if !mount_namespace {
        let refused = probe(&mut client, "!cat kernel-ws.json", &secrets).await;
        assert_eq!(refused.status(), "error");
        let said = shown(&refused) + &refused.reply.content.to_string();
        assert!(said.contains("deny list"), "{said}");
    }

    // Skills: a denied path only for the skill trusted with exactly it.
    let trusted = run(&mut client, "%skill run aws-region").await;
    assert_eq!(
        trusted.status(),
        "ok",
        "{}\n{}",
        shown(&trusted),
        daemon.log()
    );
    assert!(
        shown(&trusted).contains("eu-north-1"),
        "{}",
        shown(&trusted)
    );
    for name in ["aws-region-copy", "aws-keys"] {
        let refused = probe(&mut client, &format!("%skill run {name}"), &secrets).await;
        assert_eq!(refused.status(), "error", "{name}");
        let said = shown(&refused) + &refused.reply.content.to_string();
        assert!(said.contains("[sandbox.trust]"), "{name}: {said}");
    }
    control(&mut client, "%skill run home-notes", "home notes", &daemon).await;

    // Operators see what stays shut and how.
    let status = run(&mut client, "%sandbox status").await;
    let text = shown(&status);
    assert!(text.contains("kernel-ws.json"), "{text}");
    assert!(text.contains(".ssh"), "{text}");
    let hidden: Vec<Value> = audit(&m)
        .into_iter()
        .filter(|e| e["event"] == "denied_paths_hidden")
        .collect();
    let how = if mount_namespace {
        "masked"
    } else {
        "allowed_around"
    };
    assert!(
        hidden.iter().any(|e| e[how].as_array().is_some_and(|a| a
            .iter()
            .any(|p| p.as_str().unwrap_or("").ends_with("kernel-ws.json")))),
        "{hidden:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_shut_when_masked_in_a_mount_namespace() {
    secrets_stay_shut(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_shut_with_landlock_alone() {
    secrets_stay_shut(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_process_the_terminal_and_the_kernels_ports_are_out_of_reach() {
    let m = machine(true);
    // Started from a terminal, as from a shell: the daemon has one to
    // steer (the target of TIOCSTI is there).
    let (mut master, tty) = harness::terminal();
    let daemon = start_on(&m, Some(tty.clone()));
    let mut client = daemon.client().await;
    let pid = daemon.pid();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let tty_nr: i64 = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(4))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert_ne!(tty_nr, 0, "the daemon has no controlling terminal: {stat}");
    let secrets = ["PRIVATE KEY", "hunter2-daemon-env"];

    // /proc: the program's own is there, the daemon's is not.
    let ws = m.workspace.display();
    let own_root = format!("!cat /proc/self/root{ws}/notes.txt");
    control(&mut client, &own_root, "workspace notes", &daemon).await;
    control(
        &mut client,
        "!tr '\\0' '\\n' < /proc/self/environ",
        "PATH=",
        &daemon,
    )
    .await;
    for code in [
        format!("!cat /proc/{pid}/root$HOME/.ssh/id_ed25519"),
        format!("!cat /proc/{pid}/root{ws}/notes.txt"),
        format!("!tr '\\0' '\\n' < /proc/{pid}/environ"),
        format!("!ls /proc/{pid}/fd"),
    ] {
        let outcome = probe(&mut client, &code, &secrets).await;
        assert_eq!(outcome.status(), "error", "{code}: {}", shown(&outcome));
    }

    // What is typed at the terminal can be read from it (the control of
    // the check below).
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(&tty)
        .unwrap();
    std::io::Write::write_all(&mut master, b"y\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut typed = [0u8; 16];
    let n = std::io::Read::read(&mut reader, &mut typed).unwrap();
    assert_eq!(&typed[..n], b"y\n");

    // The terminal: nothing to push characters into; the control ioctl
    // on the program's own pipe works.
    let tty_run = run(&mut client, "!python3 probe.py tiocsti").await;
    let text = shown(&tty_run);
    assert!(!text.contains("WORKED"), "{text}");
    assert!(text.contains("refused /dev/tty"), "{text}");
    assert!(text.contains("own pipe holds 3"), "{text}");
    // Nothing was typed into the daemon's terminal.
    let read = std::io::Read::read(&mut reader, &mut typed);
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the terminal got input: {read:?} {:?}",
        &typed
    );

    // The kernel's own ports: refused without network; the same program
    // with the whole network connects (so the probe can fail).
    for port in [daemon.info.shell_port, daemon.info.control_port] {
        let code = format!("!python3 probe.py connect {port}");
        let refused = probe(&mut client, &code, &secrets).await;
        assert_eq!(refused.status(), "error", "{code}");
        assert!(
            !shown(&refused).contains("connected"),
            "{}",
            shown(&refused)
        );
    }
    let opened = format!("%skill run port-opener -- {}", daemon.info.shell_port);
    control(&mut client, &opened, "connected", &daemon).await;
    // And the kernel still answers.
    control(&mut client, "!echo still serving", "still serving", &daemon).await;
}
