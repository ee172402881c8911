//! Install benchmark (issue 16 target): installing a skill from a local git
//! repository takes ≤ 1 s.
//!
//! A bare repository (file:// URL) holding one skill of 24 files in a
//! subfolder, beside 200 other files; each round installs it with
//! [`Installer::install`] (clone, check, digest, signature, rename, lock)
//! and removes it again. The peer is a plain `git clone --depth 1` of the
//! same repository in the same run: the install's own share is the
//! difference.
//!
//! `cargo bench -p skillkernel-install --bench install_git`. Prints a table
//! and one JSON line (also `$CARGO_TARGET_DIR/bench/install_git.json`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use skillkernel_install::{InstallRequest, Installer};
use skillkernel_skills::config::SignatureConfig;

const ROUNDS: usize = 20;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@example.org")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@example.org")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn repository(root: &Path) -> String {
    let work = root.join("work");
    let skill = work.join("skills/fetch");
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::write(
        skill.join("skill.yaml"),
        "name: fetch\nversion: 1.0.0\ndescription: d\ntype: command\ncommand: \"true\"\n",
    )
    .unwrap();
    for i in 0..23 {
        std::fs::write(skill.join(format!("scripts/s{i}.sh")), [b'x'; 2048]).unwrap();
    }
    std::fs::create_dir_all(work.join("other")).unwrap();
    for i in 0..200 {
        std::fs::write(work.join(format!("other/f{i}.txt")), [b'y'; 1024]).unwrap();
    }
    git(root, &["init", "--quiet", "--initial-branch=main", "work"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "skills"]);
    git(root, &["clone", "--quiet", "--bare", "work", "repo.git"]);
    format!("file://{}", root.join("repo.git").display())
}

fn stats(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    (ms[ms.len() / 2], ms[ms.len() * 95 / 100])
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    let url = repository(root.path());
    let user_dir = root.path().join("user-skills");
    let installer = Installer::new(user_dir.clone(), SignatureConfig::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let request = InstallRequest {
        source: url.clone(),
        git_ref: Some("main".into()),
        subdir: Some("skills/fetch".into()),
        base: None,
    };
    let mut install = Vec::new();
    let mut clone = Vec::new();
    for round in 0..ROUNDS + 2 {
        let t = Instant::now();
        rt.block_on(installer.install(&request)).unwrap();
        let took = t.elapsed().as_secs_f64() * 1e3;
        installer.remove("fetch").unwrap();
        let dest: PathBuf = root.path().join(format!("clone-{round}"));
        let t = Instant::now();
        git(
            root.path(),
            &[
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--branch",
                "main",
                &url,
                dest.to_str().unwrap(),
            ],
        );
        let cloned = t.elapsed().as_secs_f64() * 1e3;
        if round >= 2 {
            install.push(took);
            clone.push(cloned);
        }
    }
    let (i50, i95) = stats(install);
    let (c50, c95) = stats(clone);
    println!("install from a local git repository (file://), {ROUNDS} rounds");
    println!("| measure | p50 | p95 | target |");
    println!("|---|---|---|---|");
    println!("| skill install (clone, check, digest, place, lock) | {i50:.1} ms | {i95:.1} ms | ≤ 1000 ms |");
    println!("| git clone --depth 1 alone (peer) | {c50:.1} ms | {c95:.1} ms | |");
    println!("install / clone, p50: {:.2}", i50 / c50);
    let json = serde_json::json!({
        "bench": "install_git",
        "install_ms": {"p50": i50, "p95": i95},
        "git_clone_ms": {"p50": c50, "p95": c95},
        "ratio_p50": i50 / c50,
        "targets_met": i95 <= 1000.0,
    });
    println!("{json}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let out = target.join("bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("install_git.json"), format!("{json}\n"));
    }
}
