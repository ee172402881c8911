use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fixtures::*;
use crate::registry::{RegistryConfig, ReloadReport, SkillRegistry, State};
use crate::{ErrorCode, Skill, SkillBody};

fn template(skill: &Skill) -> &str {
    match &skill.body {
        SkillBody::Prompt(p) => p.template.source(),
        _ => panic!("a prompt skill"),
    }
}

#[test]
fn reload_all_reports_added_updated_removed_and_failed() {
    let t = tempfile::tempdir().unwrap();
    let edit = write_skill(t.path(), "edit", "edit", "1.0.0", "");
    let delete = write_skill(t.path(), "delete", "delete", "1.0.0", "");
    let break_me = write_skill(t.path(), "break", "break", "1.0.0", "");
    write_skill(t.path(), "same", "same", "1.0.0", "");
    let (r, _) = open(&[t.path()]);
    r.activate("break").unwrap();

    std::fs::write(&edit, manifest("edit", "1.0.0", "tags: [new]\n")).unwrap();
    std::fs::remove_dir_all(delete.parent().unwrap()).unwrap();
    std::fs::write(&break_me, "name: [\n").unwrap();
    write_skill(t.path(), "new", "new", "0.1.0", "");
    let report = r.reload_all();
    assert_eq!(report.added, ["new@0.1.0"]);
    assert_eq!(report.updated, ["edit@1.0.0"]);
    assert_eq!(report.removed, ["delete@1.0.0"]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].skill.as_deref(), Some("break@1.0.0"));
    assert_eq!(report.unchanged, 1);
    assert_eq!(r.get("edit").unwrap().header.meta.tags, ["new"]);
    assert!(r.get("delete").is_err());
    assert_eq!(r.get("break").unwrap().state, State::Failed);
    assert_eq!(
        r.activate("break").unwrap_err().code,
        ErrorCode::ValidationError
    );
}

#[test]
fn a_running_execution_keeps_its_skill_across_a_reload() {
    let t = tempfile::tempdir().unwrap();
    let path = write_skill(t.path(), "s", "s", "1.0.0", "");
    let (r, _) = open(&[t.path()]);
    let run = r.begin_execution("s").unwrap();
    std::fs::write(
        &path,
        manifest("s", "1.0.0", "").replace("{{ input }}", "Edited: {{ input }}"),
    )
    .unwrap();
    let report = r.reload("s").unwrap();
    assert_eq!(report.updated, ["s@1.0.0"]);
    assert_eq!(
        template(run.skill()),
        "{{ input }}",
        "the run keeps what it started with"
    );
    let fresh = r.activate("s").unwrap();
    assert_eq!(
        template(&fresh),
        "Edited: {{ input }}",
        "new runs get the edited skill"
    );
    assert_eq!(r.get("s").unwrap().state, State::Active);
    drop(run); // an older generation: changes nothing
    assert_eq!(r.get("s").unwrap().state, State::Active);
}

#[test]
fn a_broken_edit_fails_that_version_and_other_versions_stay_usable() {
    let t = tempfile::tempdir().unwrap();
    let v2 = write_skill(t.path(), "v2", "s", "2.0.0", "");
    write_skill(t.path(), "v1", "s", "1.0.0", "");
    let (r, _) = open(&[t.path()]);
    r.activate("s").unwrap();
    std::fs::write(
        &v2,
        manifest("s", "2.0.0", "").replace("{{ input }}", "{{ oops }}"),
    )
    .unwrap();
    let report = r.reload("s").unwrap();
    assert_eq!(report.failed.len(), 1, "{report}");
    let e = r.activate("s").unwrap_err();
    assert!(
        e.message.contains("oops"),
        "the newest version is what `s` means: {e}"
    );
    assert!(r.activate("s@1").is_ok());
}

#[test]
fn reload_of_an_unknown_name_suggests_the_nearest() {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "summarize", "summarize", "1.0.0", "");
    let (r, _) = open(&[t.path()]);
    assert_eq!(
        r.reload("sumarize").unwrap_err().hint,
        "did you mean `summarize`? `%skill list` shows every skill"
    );
}

fn watched(dir: &std::path::Path) -> Arc<SkillRegistry> {
    let mut config = RegistryConfig::only([dir.to_path_buf()]);
    config.watch = true;
    config.debounce = Duration::from_millis(30);
    let (r, _) = SkillRegistry::open(config);
    assert_eq!(r.watched_dirs(), [dir.to_path_buf()]);
    r
}

/// Waits for a watcher report satisfying `done`.
fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<ReloadReport>>,
    done: impl Fn(&ReloadReport) -> bool,
) -> Arc<ReloadReport> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match rx.try_recv() {
            Ok(report) if done(&report) => return report,
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("the watcher reported nothing matching in 10 s");
}

#[test]
fn the_watcher_picks_up_new_changed_and_deleted_skills() {
    let t = tempfile::tempdir().unwrap();
    let r = watched(t.path());
    let mut rx = r.subscribe();

    let path = write_skill(t.path(), "fresh", "fresh", "1.0.0", "");
    wait_for(&mut rx, |rep| rep.added == ["fresh@1.0.0"]);
    assert!(r.get("fresh").is_ok());

    r.activate("fresh").unwrap();
    std::fs::write(&path, manifest("fresh", "1.0.0", "category: writing\n")).unwrap();
    wait_for(&mut rx, |rep| rep.updated == ["fresh@1.0.0"]);
    assert_eq!(
        r.get("fresh").unwrap().header.meta.category.as_deref(),
        Some("writing")
    );
    assert_eq!(
        r.get("fresh").unwrap().state,
        State::Loaded,
        "loaded again at once"
    );

    std::fs::write(&path, "name: [\n").unwrap();
    let rep = wait_for(&mut rx, |rep| !rep.failed.is_empty());
    assert_eq!(rep.failed[0].skill.as_deref(), Some("fresh@1.0.0"));
    assert_eq!(r.get("fresh").unwrap().state, State::Failed);

    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    wait_for(&mut rx, |rep| rep.removed == ["fresh@1.0.0"]);
    assert!(r.get("fresh").is_err());
}

#[test]
fn the_watcher_ignores_hidden_files_and_reloads_a_skill_whose_resource_changed() {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "s", "s", "1.0.0", "");
    let r = watched(t.path());
    let mut rx = r.subscribe();
    r.activate("s").unwrap();
    write(t.path(), "s/.skill.yaml.swp", "junk");
    write(t.path(), "s/notes.md", "a resource");
    let rep = wait_for(&mut rx, |rep| !rep.is_quiet());
    assert_eq!(rep.updated, ["s@1.0.0"]);
    assert_eq!(rep.io.header_parses, 0, "the manifest itself is unchanged");
    assert_eq!(r.get("s").unwrap().state, State::Loaded);
}
