//! Workspace trust benchmark (issue 16 target): the trust check adds
//! ≤ 100 µs to a skill run.
//!
//! One folder skill that asks for a program and network, with 40 files of
//! 4 KiB beside its manifest, trusted in a store:
//!
//! * `begin_execution` with `trust = "all"` (no check) against the same
//!   with `trust = "ask"` and the skill trusted (digest cached, the
//!   registry watching): the difference is what the check adds to a run;
//! * `Trust::check` alone, cached;
//! * `Trust::check` without a watcher (every check digests the files), for
//!   comparison.
//!
//! `cargo bench -p skillkernel-skills --bench skill_trust`. Prints a table
//! and one JSON line (also written to `$CARGO_TARGET_DIR/bench/skill_trust.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skillkernel_skills::registry::{RegistryConfig, SkillRegistry};
use skillkernel_skills::trust::{TrustPolicy, TrustSettings};

const ROUNDS: usize = 5_000;

fn skill(root: &Path) {
    let dir = root.join("fetch");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("skill.yaml"),
        "name: fetch\nversion: 1.0.0\ndescription: Fetches.\ntype: command\ncommand: \"true\"\n\
         permissions:\n  network: true\n",
    )
    .unwrap();
    for i in 0..40 {
        std::fs::write(dir.join(format!("scripts/part-{i:02}.sh")), [b'x'; 4096]).unwrap();
    }
}

fn open(dir: &Path, policy: TrustPolicy, store: &Path, watch: bool) -> Arc<SkillRegistry> {
    let mut config = RegistryConfig::only([dir.to_path_buf()]);
    config.watch = watch;
    config.debounce = Duration::from_millis(20);
    config.trust = TrustSettings {
        policy,
        store: Some(store.to_path_buf()),
        workspace: dir.to_path_buf(),
    };
    SkillRegistry::open(config).0
}

struct Stats {
    p50: f64,
    p95: f64,
}

/// Microseconds per call of `f`, over `n` calls after a warm-up.
fn measure(n: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..100 {
        f();
    }
    let mut us: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(|a, b| a.total_cmp(b));
    Stats {
        p50: us[n / 2],
        p95: us[n * 95 / 100],
    }
}

fn main() {
    let skills = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    skill(skills.path());
    let store = state.path().join("skill-trust.json");

    let all = open(skills.path(), TrustPolicy::All, &store, true);
    let ask = open(skills.path(), TrustPolicy::Ask, &store, true);
    let unwatched = open(skills.path(), TrustPolicy::Ask, &store, false);
    let skill = ask.loaded("fetch").unwrap();
    ask.trust().grant(&skill, None, "bench").unwrap();

    let run_all = measure(ROUNDS, || drop(all.begin_execution("fetch").unwrap()));
    let run_ask = measure(ROUNDS, || drop(ask.begin_execution("fetch").unwrap()));
    let check = measure(ROUNDS, || {
        ask.trust().check(&skill).unwrap();
    });
    let check_uncached = measure(500, || {
        unwatched.trust().check(&skill).unwrap();
    });
    let added = run_ask.p50 - run_all.p50;

    println!("workspace trust, one skill of 41 files (164 KiB)");
    println!("| measure | p50 | p95 | target |");
    println!("|---|---|---|---|");
    let row = |what: &str, s: &Stats, target: &str| {
        println!("| {what} | {:.1} µs | {:.1} µs | {target} |", s.p50, s.p95)
    };
    row("begin_execution, trust = all", &run_all, "baseline");
    row("begin_execution, trust = ask, trusted", &run_ask, "");
    row("Trust::check, digest cached", &check, "≤ 100 µs");
    row(
        "Trust::check, no watcher (digest each time)",
        &check_uncached,
        "comparison",
    );
    println!("added to a run by the check, p50: {added:.1} µs (target ≤ 100 µs)");

    let json = serde_json::json!({
        "bench": "skill_trust",
        "files": 41,
        "begin_execution_all_us": {"p50": run_all.p50, "p95": run_all.p95},
        "begin_execution_ask_us": {"p50": run_ask.p50, "p95": run_ask.p95},
        "check_cached_us": {"p50": check.p50, "p95": check.p95},
        "check_uncached_us": {"p50": check_uncached.p50, "p95": check_uncached.p95},
        "added_us_p50": added,
        "targets_met": added <= 100.0 && check.p95 <= 100.0,
    });
    println!("{json}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let out = target.join("bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("skill_trust.json"), format!("{json}\n"));
    }
}
