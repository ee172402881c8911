//! Skill registry benchmarks (issue 5 targets):
//!
//! * search over 500 skills: p95 ≤ 1 ms;
//! * opening the registry with 500 skills and a persisted index: ≤ 100 ms
//!   more than an empty registry (and without the index, for comparison);
//! * hot reload of one changed skill among 500: ≤ 20 ms, through
//!   `reload(name)` and through the watcher (file write → report).
//!
//! `cargo bench -p skillkernel-skills --bench skill_registry`. Prints a
//! table and one JSON line (also written to
//! `$CARGO_TARGET_DIR/bench/skill_registry.json`, default `target/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skillkernel_skills::registry::{RegistryConfig, SkillRegistry};

const SKILLS: usize = 500;
const WORDS: &[&str] = &[
    "summarize",
    "translate",
    "review",
    "explain",
    "outline",
    "rewrite",
    "classify",
    "extract",
    "draft",
    "proofread",
    "plan",
    "compare",
];
const TAGS: &[&str] = &[
    "rust", "python", "writing", "code", "data", "email", "legal", "docs",
];
const AUTHORS: &[&str] = &["Ana Lima", "Bo Chen", "Chidi Okafor", "Dana Weiss"];
const CATEGORIES: &[&str] = &["writing", "engineering", "learning", "operations"];
const DEBOUNCE: Duration = Duration::from_millis(20);

fn manifest(i: usize, variant: usize) -> String {
    let w = WORDS[i % WORDS.len()];
    format!(
        "name: {w}-{i:03}\nversion: 1.0.0\ndescription: {w} the input for {} readers, variant {variant}\n\
         author: {}\ncategory: {}\ntags: [{}, {}]\ntype: prompt\n\
         parameters:\n  - name: tone\n    type: enum\n    values: [plain, formal]\n    default: plain\n\
         template: \"{w} this in a {{{{ tone }}}} tone: {{{{ input }}}}\"\n",
        TAGS[i % 3],
        AUTHORS[i % AUTHORS.len()],
        CATEGORIES[i % CATEGORIES.len()],
        TAGS[i % TAGS.len()],
        TAGS[(i / 3) % TAGS.len()],
    )
}

fn generate(root: &Path) -> Vec<PathBuf> {
    (0..SKILLS)
        .map(|i| {
            let dir = root.join(format!("group-{}/skill-{i:03}", i % 10));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("skill.yaml");
            std::fs::write(&path, manifest(i, 0)).unwrap();
            path
        })
        .collect()
}

fn config(dir: &Path, index: Option<&Path>, watch: bool) -> RegistryConfig {
    let mut c = RegistryConfig::only([dir.to_path_buf()]);
    c.index_path = index.map(Path::to_path_buf);
    c.watch = watch;
    c.debounce = DEBOUNCE;
    c
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    p50: f64,
    p95: f64,
    n: usize,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Stats {
        p50: at(0.50),
        p95: at(0.95),
        n: ms.len(),
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64() * 1e3, out)
}

fn bench_search(dir: &Path) -> Stats {
    let (registry, _) = SkillRegistry::open(config(dir, None, false));
    let queries = [
        "summarize",
        "summarize-010",
        "rev",
        "tag:rust",
        "author:ana formal",
        "category:writing readers",
        "tag:code explain variant",
        "nothing-matches-this",
    ];
    for q in queries {
        registry.search(q).unwrap(); // warm-up
    }
    let mut ms = Vec::new();
    for round in 0..400 {
        let q = queries[round % queries.len()];
        let (t, hits) = time(|| registry.search(q).unwrap());
        std::hint::black_box(hits);
        ms.push(t);
    }
    stats(ms)
}

fn bench_open(dir: &Path, index: Option<&Path>, skills: usize, runs: usize) -> Stats {
    let mut ms = Vec::new();
    for _ in 0..runs {
        let (t, (registry, report)) = time(|| SkillRegistry::open(config(dir, index, false)));
        assert!(report.failed.is_empty(), "{report}");
        assert_eq!(registry.names().len(), skills);
        drop(registry);
        ms.push(t);
    }
    stats(ms)
}

fn bench_reload(dir: &Path, paths: &[PathBuf], index: &Path) -> Stats {
    let (registry, _) = SkillRegistry::open(config(dir, Some(index), false));
    let mut ms = Vec::new();
    for round in 1..=60 {
        let i = (round * 37) % SKILLS;
        let name = format!("{}-{i:03}", WORDS[i % WORDS.len()]);
        registry.activate(&name).unwrap();
        std::fs::write(&paths[i], manifest(i, round)).unwrap();
        let (t, report) = time(|| registry.reload(&name).unwrap());
        assert_eq!(report.updated, [format!("{name}@1.0.0")], "{report}");
        ms.push(t);
    }
    stats(ms)
}

fn bench_watch(dir: &Path, paths: &[PathBuf], index: &Path) -> (Stats, Stats) {
    let (registry, _) = SkillRegistry::open(config(dir, Some(index), true));
    let mut rx = registry.subscribe();
    let mut end_to_end = Vec::new();
    let mut applied = Vec::new();
    for round in 1..=30 {
        let i = (round * 53) % SKILLS;
        let start = Instant::now();
        std::fs::write(&paths[i], manifest(i, 100 + round)).unwrap();
        let report = wait(&mut rx, &registry);
        end_to_end.push(start.elapsed().as_secs_f64() * 1e3);
        applied.push(report.elapsed.as_secs_f64() * 1e3);
        std::thread::sleep(DEBOUNCE * 3);
        while rx.try_recv().is_ok() {}
    }
    (stats(end_to_end), stats(applied))
}

fn wait(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<skillkernel_skills::registry::ReloadReport>>,
    _registry: &SkillRegistry,
) -> Arc<skillkernel_skills::registry::ReloadReport> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match rx.try_recv() {
            Ok(r) if !r.is_quiet() => return r,
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    panic!("no watcher report within 10 s");
}

fn row(what: &str, s: Stats, target: &str) {
    println!(
        "| {what} | {:.3} ms | {:.3} ms | {} | {target} |",
        s.p50, s.p95, s.n
    );
}

fn main() {
    let skills = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let paths = generate(skills.path());
    let index = state.path().join("skills-index");
    let empty_index = state.path().join("empty-index");

    let search = bench_search(skills.path());
    // Persist the index once, then measure restarts that reuse it.
    drop(SkillRegistry::open(config(
        skills.path(),
        Some(&index),
        false,
    )));
    let open_empty = bench_open(empty.path(), Some(&empty_index), 0, 20);
    let open_indexed = bench_open(skills.path(), Some(&index), SKILLS, 20);
    let open_unindexed = bench_open(skills.path(), None, SKILLS, 10);
    let reload = bench_reload(skills.path(), &paths, &index);
    let (watch_total, watch_applied) = bench_watch(skills.path(), &paths, &index);

    println!(
        "skill registry, {SKILLS} skills (watcher debounce {} ms)",
        DEBOUNCE.as_millis()
    );
    println!("| measure | p50 | p95 | n | target |");
    println!("|---|---|---|---|---|");
    row("search", search, "p95 ≤ 1 ms");
    row("open, empty registry", open_empty, "baseline");
    row(
        "open, 500 skills, persisted index",
        open_indexed,
        "≤ baseline + 100 ms",
    );
    row("open, 500 skills, no index", open_unindexed, "comparison");
    row("reload(name) of one changed skill", reload, "≤ 20 ms");
    row("watcher: write → report (incl. debounce)", watch_total, "");
    row(
        "watcher: rescan applied (report.elapsed)",
        watch_applied,
        "≤ 20 ms",
    );
    let extra = open_indexed.p50 - open_empty.p50;
    println!("open with index − empty, p50: {extra:.3} ms");

    let json = serde_json::json!({
        "bench": "skill_registry",
        "skills": SKILLS,
        "debounce_ms": DEBOUNCE.as_millis() as u64,
        "search_ms": {"p50": search.p50, "p95": search.p95},
        "open_empty_ms": {"p50": open_empty.p50, "p95": open_empty.p95},
        "open_indexed_ms": {"p50": open_indexed.p50, "p95": open_indexed.p95},
        "open_unindexed_ms": {"p50": open_unindexed.p50, "p95": open_unindexed.p95},
        "open_indexed_extra_ms_p50": extra,
        "reload_name_ms": {"p50": reload.p50, "p95": reload.p95},
        "watch_end_to_end_ms": {"p50": watch_total.p50, "p95": watch_total.p95},
        "watch_applied_ms": {"p50": watch_applied.p50, "p95": watch_applied.p95},
        "targets_met": search.p95 <= 1.0 && extra <= 100.0 && reload.p95 <= 20.0 && watch_applied.p95 <= 20.0,
    });
    println!("{json}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let out = target.join("bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("skill_registry.json"), format!("{json}\n"));
    }
}
