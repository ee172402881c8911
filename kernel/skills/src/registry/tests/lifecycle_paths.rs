use std::sync::Arc;

use super::fixtures::*;
use crate::registry::{SkillRegistry, State};
use crate::ErrorCode;

fn one_skill() -> (tempfile::TempDir, Arc<SkillRegistry>) {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "s", "s", "1.0.0", "");
    let (r, _) = open(&[t.path()]);
    (t, r)
}

fn state(r: &SkillRegistry) -> State {
    r.get("s").unwrap().state
}

fn trail(r: &SkillRegistry) -> Vec<String> {
    r.info("s")
        .unwrap()
        .history
        .iter()
        .map(|t| format!("{}→{}", t.hook, t.to))
        .collect()
}

#[test]
fn discovery_leaves_skills_unloaded_and_first_use_loads_them() {
    let (_t, r) = one_skill();
    assert_eq!(state(&r), State::Unloaded);
    assert_eq!(
        r.io_counts().full_parses,
        0,
        "lazy: nothing parsed in full at discovery"
    );
    r.activate("s").unwrap();
    assert_eq!(r.io_counts().full_parses, 1);
    r.activate("s").unwrap();
    assert_eq!(r.io_counts().full_parses, 1, "the parsed skill is kept");
}

#[test]
fn concurrent_executions_are_counted_and_the_last_one_ends_executing() {
    let (_t, r) = one_skill();
    let first = r.begin_execution("s").unwrap();
    let second = r.begin_execution("s").unwrap();
    assert!(Arc::ptr_eq(first.skill(), second.skill()));
    assert_eq!(
        (state(&r), r.info("s").unwrap().executions),
        (State::Executing, 2)
    );
    drop(first);
    assert_eq!(
        (state(&r), r.info("s").unwrap().executions),
        (State::Executing, 1)
    );
    drop(second);
    assert_eq!(state(&r), State::Active);
    assert_eq!(
        trail(&r),
        [
            "load→Loaded",
            "init→Initializing",
            "init→Ready",
            "activate→Active",
            "execute→Executing",
            "execute→Active"
        ]
    );
    let executing = &r.info("s").unwrap().history[5];
    assert_eq!(executing.from, State::Executing);
}

#[test]
fn unload_is_refused_while_executing_and_passes_through_deactivated_when_active() {
    let (_t, r) = one_skill();
    let run = r.begin_execution("s").unwrap();
    let e = r.unload("s").unwrap_err();
    assert_eq!(e.code, ErrorCode::ValidationError);
    assert_eq!(
        e.message,
        "cannot unload `s@1.0.0`: it is Executing, with 1 run(s) in progress"
    );
    drop(run);
    assert_eq!(r.unload("s").unwrap(), ["s@1.0.0"]);
    assert_eq!(state(&r), State::Unloaded);
    assert_eq!(
        trail(&r)[6..],
        ["deactivate→Deactivated", "unload→Unloaded"]
    );
    assert_eq!(
        r.get("s").unwrap().header.meta.name,
        "s",
        "the header is kept"
    );
    assert!(r.unload("s").unwrap().is_empty(), "nothing left to unload");
    r.activate("s").unwrap();
    assert_eq!(state(&r), State::Active);
}

#[test]
fn disable_deactivates_and_enable_reinitialises_on_next_use() {
    let (_t, r) = one_skill();
    r.activate("s").unwrap();
    r.disable("s", "being rewritten").unwrap();
    assert_eq!(r.list()[0].state, State::Deactivated);
    let e = r.activate("s").unwrap_err();
    assert_eq!(e.code, ErrorCode::SkillNotFound);
    assert_eq!(e.message, "`s@1.0.0` is disabled: being rewritten");
    r.enable("s").unwrap();
    r.activate("s").unwrap();
    assert_eq!(
        trail(&r)[4..],
        [
            "deactivate→Deactivated",
            "init→Initializing",
            "init→Ready",
            "activate→Active"
        ]
    );
}

#[test]
fn disabling_a_running_skill_lets_the_run_finish_then_deactivates_it() {
    let (_t, r) = one_skill();
    let run = r.begin_execution("s").unwrap();
    r.disable("s", "later").unwrap();
    assert_eq!(r.list()[0].state, State::Executing);
    drop(run);
    assert_eq!(r.list()[0].state, State::Deactivated);
}

#[test]
fn a_failed_load_is_kept_until_reload_then_retried() {
    let t = tempfile::tempdir().unwrap();
    let path = write(
        t.path(),
        "s/skill.yaml",
        &manifest("s", "1.0.0", "").replace("{{ input }}", "{{ inptu }}"),
    );
    let (r, _) = open(&[t.path()]);
    let first = r.activate("s").unwrap_err();
    let parses = r.io_counts().full_parses;
    assert_eq!(
        r.activate("s").unwrap_err(),
        first,
        "the kept error, no new parse"
    );
    assert_eq!(r.io_counts().full_parses, parses);
    std::fs::write(&path, manifest("s", "1.0.0", "")).unwrap();
    let report = r.reload("s").unwrap();
    assert_eq!(report.updated, ["s@1.0.0"]);
    assert_eq!(
        state(&r),
        State::Loaded,
        "reloaded at once, since it had been loaded"
    );
    assert!(r.activate("s").is_ok());
}

#[test]
fn load_brings_a_skill_to_ready_without_activating_it() {
    let (_t, r) = one_skill();
    assert_eq!(r.load("s").unwrap().state, State::Ready);
    assert_eq!(r.info("s").unwrap().executions, 0);
}

#[test]
fn the_registry_and_a_run_can_cross_threads_and_awaits() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SkillRegistry>();
    shareable::<crate::registry::ExecutionGuard>();
    let (_t, r) = one_skill();
    let run = r.begin_execution("s").unwrap();
    std::thread::spawn(move || drop(run)).join().unwrap();
    assert_eq!(state(&r), State::Active);
}
