//! Installing shared skills through a real daemon and `skillctl`: from a
//! local bare git repository (file:// URL, a branch, a subfolder), from
//! archives a local HTTP server serves, from a folder signed with Debian's
//! `minisign`; `update`, `remove`, `list --installed`; and every bad
//! source refused with its remedy and nothing half-installed: a source
//! that does not exist, a ref that does not resolve, an archive with `../`
//! paths or a link out, an unsigned skill under `require`, a lock file
//! edited by hand.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use harness::{run, shown, Daemon, Launch};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn sh(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A command skill asking for network (so it needs trust), `version`.
fn fetch_skill(dir: &Path, name: &str, version: &str) {
    write(
        &dir.join("skill.yaml"),
        &format!(
            "name: {name}\nversion: {version}\ndescription: Fetches.\ntype: command\n\
             command: echo\nargs: [{name}-{version}]\npermissions:\n  network: true\n"
        ),
    );
    write(&dir.join("scripts/helper.sh"), "echo helper\n");
}

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// The bare repository's file:// URL.
    repo_url: String,
    work: PathBuf,
    public_key: String,
    secret_key: PathBuf,
}

/// A bare repository holding `skills/fetch` on `main`, and a minisign key
/// pair (no password).
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let bare = root.join("repo.git");
    sh(
        &root,
        "git",
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            bare.to_str().unwrap(),
        ],
    );
    let work = root.join("work");
    sh(
        &root,
        "git",
        &[
            "init",
            "--quiet",
            "--initial-branch=main",
            work.to_str().unwrap(),
        ],
    );
    fetch_skill(&work.join("skills/fetch"), "fetch", "1.0.0");
    sh(&work, "git", &["add", "."]);
    sh(&work, "git", &["commit", "--quiet", "-m", "fetch 1.0.0"]);
    sh(
        &work,
        "git",
        &["push", "--quiet", bare.to_str().unwrap(), "main"],
    );
    // Branch `evil`: the same skill with a link to the user's keys.
    sh(&work, "git", &["checkout", "--quiet", "-b", "evil"]);
    std::os::unix::fs::symlink("/root/.ssh", work.join("skills/fetch/keys")).unwrap();
    sh(&work, "git", &["add", "."]);
    sh(&work, "git", &["commit", "--quiet", "-m", "keys"]);
    sh(
        &work,
        "git",
        &["push", "--quiet", bare.to_str().unwrap(), "evil"],
    );
    // Branch `escape`: a link fine in the repository, out of the subfolder.
    sh(&work, "git", &["checkout", "--quiet", "main"]);
    sh(&work, "git", &["checkout", "--quiet", "-b", "escape"]);
    write(&work.join("README.md"), "the repository's readme\n");
    std::os::unix::fs::symlink("../../README.md", work.join("skills/fetch/readme")).unwrap();
    sh(&work, "git", &["add", "."]);
    sh(&work, "git", &["commit", "--quiet", "-m", "readme"]);
    sh(
        &work,
        "git",
        &["push", "--quiet", bare.to_str().unwrap(), "escape"],
    );
    sh(&work, "git", &["checkout", "--quiet", "main"]);
    let (public, secret) = (root.join("minisign.pub"), root.join("minisign.key"));
    sh(
        &root,
        "minisign",
        &[
            "-G",
            "-W",
            "-p",
            public.to_str().unwrap(),
            "-s",
            secret.to_str().unwrap(),
        ],
    );
    let public_key = std::fs::read_to_string(&public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    World {
        repo_url: format!("file://{}", bare.display()),
        _dir: dir,
        root,
        work,
        public_key,
        secret_key: secret,
    }
}

/// Signs skill folder `dir` as an author would: its digest manifest, from
/// `skillkernel skill-digest`, signed with `minisign`.
fn sign(w: &World, dir: &Path) {
    let manifest = Command::new(harness::bin("skillkernel"))
        .args(["skill-digest", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(manifest.status.success(), "{}", text(&manifest));
    let m = w.root.join("digest-manifest.txt");
    std::fs::write(&m, &manifest.stdout).unwrap();
    sh(
        &w.root,
        "minisign",
        &[
            "-S",
            "-s",
            w.secret_key.to_str().unwrap(),
            "-m",
            m.to_str().unwrap(),
            "-x",
            dir.join("skill.minisig").to_str().unwrap(),
        ],
    );
}

fn start(w: &World, policy: &str) -> (Daemon, PathBuf) {
    let user_dir = w.root.join(format!("user-skills-{policy}"));
    let config = w.root.join(format!("config-{policy}.toml"));
    write(
        &config,
        &format!(
            "[skills]\nproject = false\nbuiltin = false\nuser_dir = {user_dir:?}\n\
             [skills.signatures]\npolicy = {policy:?}\nkeys = [{:?}]\n",
            w.public_key
        ),
    );
    let workspace = w.root.join(format!("ws-{policy}"));
    std::fs::create_dir_all(&workspace).unwrap();
    let daemon = Daemon::start_with(
        Launch {
            cwd: Some(workspace),
            ..Launch::default()
        },
        &["--config", config.to_str().unwrap()],
    );
    (daemon, user_dir)
}

/// What the user skill directory holds (names), hidden ones included.
fn contents(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A local HTTP server over `dir` (Python's http.server).
struct Served(Child, u16);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let port = harness::free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "http.server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Served(child, port)
}

/// Archives for the server: a good one, one with `../`, one with a link
/// out (written by Python's tarfile, which writes what it is told).
fn archives(w: &World) -> PathBuf {
    let dir = w.root.join("www");
    std::fs::create_dir_all(&dir).unwrap();
    fetch_skill(&w.root.join("archived/tally-1.0"), "tally", "1.0.0");
    let script = format!(
        r#"
import io, tarfile
def add(t, name, data=b"", link=None):
    i = tarfile.TarInfo(name)
    if link is not None:
        i.type, i.linkname = tarfile.SYMTYPE, link
    else:
        i.size = len(data)
    t.addfile(i, io.BytesIO(data) if link is None else None)
with tarfile.open("{www}/good.tar.gz", "w:gz") as t:
    t.add("{src}", arcname="tally-1.0")
with tarfile.open("{www}/dotdot.tar.gz", "w:gz") as t:
    add(t, "x/skill.yaml", b"name: x\n")
    add(t, "../../escaped.txt", b"gotcha")
with tarfile.open("{www}/linkout.tar.gz", "w:gz") as t:
    add(t, "x/skill.yaml", b"name: x\n")
    add(t, "x/keys", link="/root/.ssh")
"#,
        www = dir.display(),
        src = w.root.join("archived/tally-1.0").display()
    );
    sh(&w.root, "python3", &["-c", &script]);
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn skills_install_from_git_archives_and_folders_update_and_remove_and_bad_sources_leave_nothing(
) {
    let w = world();
    let (daemon, user_dir) = start(&w, "warn");
    let mut client = daemon.client().await;

    // From the bare repository: a branch and a subfolder.
    let out = daemon.skillctl(&[
        "skill",
        "install",
        &w.repo_url,
        "--ref",
        "main",
        "--subdir",
        "skills/fetch",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("fetch@1.0.0 installed"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("not signed"), "{}", text(&out));
    assert!(user_dir.join("fetch/skill.yaml").is_file());
    assert!(!user_dir.join("fetch/.git").exists());
    let commit = sh(&w.work, "git", &["rev-parse", "HEAD"]).trim().to_owned();
    let listed = text(&daemon.skillctl(&["skill", "list", "--installed"]));
    assert!(
        listed.contains("fetch") && listed.contains(&commit) && listed.contains("ok"),
        "{listed}"
    );
    // Installed is not trusted: it asks for network.
    let refused = run(&mut client, "%%run fetch\n").await;
    assert_eq!(
        refused.reply.content["ename"],
        "TRUST_REQUIRED",
        "{}",
        shown(&refused)
    );

    // Installing it twice is refused with the remedy.
    let again = daemon.skillctl(&["skill", "install", &w.repo_url, "--subdir", "skills/fetch"]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("skillctl skill update fetch"),
        "{}",
        text(&again)
    );

    // A new commit on main; `update` fetches it.
    fetch_skill(&w.work.join("skills/fetch"), "fetch", "1.1.0");
    sh(&w.work, "git", &["commit", "--quiet", "-am", "fetch 1.1.0"]);
    sh(
        &w.work,
        "git",
        &[
            "push",
            "--quiet",
            w.root.join("repo.git").to_str().unwrap(),
            "main",
        ],
    );
    let out = daemon.skillctl(&["skill", "update", "fetch"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("fetch@1.1.0 updated"), "{}", text(&out));
    let listed = run(&mut client, "%skill list").await;
    assert!(shown(&listed).contains("1.1.0"), "{}", shown(&listed));

    // A signed folder: a trusted key's signature stands in for the trust
    // prompt, so it runs at once.
    let signed = w.root.join("signed-src");
    fetch_skill(&signed, "signed", "1.0.0");
    sign(&w, &signed);
    // From the notebook this time.
    let cell = run(&mut client, &format!("%skill install {}", signed.display())).await;
    assert_eq!(cell.status(), "ok", "{}", shown(&cell));
    assert!(
        shown(&cell).contains(&format!("signed by {}", w.public_key)),
        "{}",
        shown(&cell)
    );
    assert!(
        shown(&cell).contains("trusted: signed by a key"),
        "{}",
        shown(&cell)
    );
    let ran = run(&mut client, "%%run signed\n").await;
    assert_eq!(ran.status(), "ok", "{}", shown(&ran));
    assert!(shown(&ran).contains("signed-1.0.0"), "{}", shown(&ran));
    // Trusted as any grant is: audited, with what it asks for.
    let audit = std::fs::read_to_string(daemon.dir.path().join("state/sandbox-audit.jsonl"))
        .unwrap_or_default();
    let trusted: serde_json::Value = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "skill_trusted")
        .unwrap_or_else(|| panic!("no skill_trusted event in the audit log:\n{audit}"));
    assert_eq!(
        trusted["via"],
        format!("signature by {}", w.public_key),
        "{trusted}"
    );
    assert!(
        trusted["asks"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.contains("network")))),
        "{trusted}"
    );

    // Archives over HTTP: one installs (its top folder descended into).
    let www = archives(&w);
    let served = serve(&www);
    let url = |name: &str| format!("http://127.0.0.1:{}/{name}", served.1);
    let out = daemon.skillctl(&["skill", "install", &url("good.tar.gz")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("tally@1.0.0 installed"),
        "{}",
        text(&out)
    );

    // Bad sources: each refused with its reason, nothing left behind.
    let before = contents(&user_dir);
    for (args, expected) in [
        (vec!["/nonexistent/skill"], "no such file or folder"),
        (
            vec![
                w.repo_url.as_str(),
                "--ref",
                "no-such-branch",
                "--subdir",
                "skills/fetch",
            ],
            "no-such-branch",
        ),
        (vec![&url("dotdot.tar.gz")[..]], "outside the skill"),
        (vec![&url("linkout.tar.gz")[..]], "outside the skill"),
        (vec![&url("missing.tar.gz")[..]], "404"),
        (
            vec![
                w.repo_url.as_str(),
                "--ref",
                "evil",
                "--subdir",
                "skills/fetch",
            ],
            "outside the skill",
        ),
        (
            vec![
                w.repo_url.as_str(),
                "--ref",
                "escape",
                "--subdir",
                "skills/fetch",
            ],
            "outside the skill",
        ),
        (
            vec![w.repo_url.as_str(), "--ref=--upload-pack=touch /tmp/pwned"],
            "is not a branch",
        ),
        (
            vec![w.repo_url.as_str(), "--subdir", "skills/none"],
            "no such subfolder",
        ),
    ] {
        let mut argv = vec!["skill", "install"];
        argv.extend(args.iter().copied());
        let out = daemon.skillctl(&argv);
        assert!(!out.status.success(), "{argv:?} installed: {}", text(&out));
        assert!(
            text(&out).contains("INSTALL_ERROR"),
            "{argv:?}: {}",
            text(&out)
        );
        assert!(text(&out).contains(expected), "{argv:?}: {}", text(&out));
        assert_eq!(contents(&user_dir), before, "{argv:?} left something");
    }
    // `../../escaped.txt` from the staging folder would land in the user
    // skill dir or beside it: nowhere has it.
    for dir in [&w.root, &www, &user_dir, user_dir.parent().unwrap()] {
        assert!(!dir.join("escaped.txt").exists(), "{}", dir.display());
    }

    // Remove: gone from disk, the lock and the registry.
    let out = daemon.skillctl(&["skill", "remove", "fetch"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!user_dir.join("fetch").exists());
    let gone = run(&mut client, "%%run fetch\n").await;
    assert_eq!(
        gone.reply.content["ename"],
        "SKILL_NOT_FOUND",
        "{}",
        shown(&gone)
    );
    let listed = text(&daemon.skillctl(&["skill", "list", "--installed"]));
    assert!(
        !listed.contains("fetch") && listed.contains("tally"),
        "{listed}"
    );

    // A lock file edited by hand is refused, not believed.
    let lock = user_dir.join("skills.lock.json");
    let edited = std::fs::read_to_string(&lock)
        .unwrap()
        .replace("good.tar.gz", "evil.tar.gz");
    std::fs::write(&lock, edited).unwrap();
    let out = daemon.skillctl(&["skill", "update", "tally"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("edited by hand"), "{}", text(&out));
    let out = run(&mut client, "%skill list --installed").await;
    assert!(shown(&out).contains("remove the file"), "{}", shown(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn under_require_only_a_skill_signed_by_a_configured_key_installs() {
    let w = world();
    let (daemon, user_dir) = start(&w, "require");
    let unsigned = w.root.join("unsigned");
    fetch_skill(&unsigned, "plain", "1.0.0");
    let out = daemon.skillctl(&["skill", "install", unsigned.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("policy is `require`"), "{}", text(&out));
    assert!(
        contents(&user_dir)
            .iter()
            .all(|n| n == "skills.lock.json" || n.ends_with(".lock")),
        "{:?}",
        contents(&user_dir)
    );

    // Signed, then changed after signing: the signature no longer covers it.
    let tampered = w.root.join("tampered");
    fetch_skill(&tampered, "tampered", "1.0.0");
    sign(&w, &tampered);
    write(&tampered.join("scripts/helper.sh"), "curl evil.example\n");
    let out = daemon.skillctl(&["skill", "install", tampered.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("bad signature"), "{}", text(&out));

    // Positive control: the same skill, signed as it is, installs.
    sign(&w, &tampered);
    let out = daemon.skillctl(&["skill", "install", tampered.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(user_dir.join("tampered/skill.minisig").is_file());
}
