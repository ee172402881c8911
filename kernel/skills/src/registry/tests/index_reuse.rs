use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::fixtures::*;
use crate::registry::{RegistryConfig, SkillRegistry, State};

fn with_index(dir: &Path, index: &Path) -> Arc<SkillRegistry> {
    let mut config = RegistryConfig::only([dir.to_path_buf()]);
    config.index_path = Some(index.to_path_buf());
    SkillRegistry::open(config).0
}

/// Replaces the file's bytes with garbage of the same size and puts its
/// mtime back: only a registry that reads it can tell.
fn garble_keeping_stat(path: &Path) {
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta.modified().unwrap();
    std::fs::write(path, vec![b'#'; meta.len() as usize]).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(mtime).unwrap();
}

#[test]
fn a_restart_with_unchanged_skills_reads_no_manifest() {
    let skills = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let index = state.path().join("skills-index");
    let mut paths = Vec::new();
    for i in 0..20 {
        paths.push(write_skill(
            skills.path(),
            &format!("s{i}"),
            &format!("s{i}"),
            "1.0.0",
            "",
        ));
    }
    let first = with_index(skills.path(), &index);
    assert_eq!(first.io_counts().header_parses, 20);
    drop(first);

    for p in &paths {
        garble_keeping_stat(p);
    }
    let second = with_index(skills.path(), &index);
    let io = second.io_counts();
    assert_eq!((io.stats, io.reads, io.header_parses), (20, 0, 0), "{io:?}");
    assert_eq!(second.names().len(), 20, "headers came from the index");
    assert_eq!(
        second.get("s7").unwrap().header.meta.description,
        "the s7 skill"
    );
}

#[test]
fn a_touched_but_identical_file_is_recognised_by_its_hash() {
    let skills = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let index = state.path().join("skills-index");
    let path = write_skill(skills.path(), "s", "s", "1.0.0", "");
    drop(with_index(skills.path(), &index));
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();

    let r = with_index(skills.path(), &index);
    let io = r.io_counts();
    assert_eq!((io.reads, io.header_parses), (1, 0), "{io:?}");
    drop(r);
    // The new mtime was recorded: the next start reads nothing.
    let r = with_index(skills.path(), &index);
    assert_eq!(r.io_counts().reads, 0);
}

#[test]
fn a_changed_file_is_parsed_again_and_deleted_files_leave_the_index() {
    let skills = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let index = state.path().join("skills-index");
    let keep = write_skill(skills.path(), "keep", "keep", "1.0.0", "");
    let gone = write_skill(skills.path(), "gone", "gone", "1.0.0", "");
    drop(with_index(skills.path(), &index));
    std::fs::write(&keep, manifest("keep", "1.1.0", "")).unwrap();
    std::fs::remove_file(&gone).unwrap();

    let r = with_index(skills.path(), &index);
    assert_eq!(r.io_counts().header_parses, 1);
    assert_eq!(r.names(), ["keep"]);
    assert_eq!(r.get("keep").unwrap().id, "keep@1.1.0");
    drop(r);
    let i = crate::registry::index::Index::open(&index).unwrap();
    assert_eq!(i.paths().unwrap(), [keep]);
}

#[test]
fn a_broken_edit_keeps_the_name_and_version_the_index_last_saw() {
    let skills = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let index = state.path().join("skills-index");
    let path = write_skill(skills.path(), "s", "s", "1.0.0", "");
    drop(with_index(skills.path(), &index));
    std::fs::write(&path, "name: [broken\n").unwrap();
    let r = with_index(skills.path(), &index);
    let entry = r.get("s").unwrap();
    assert_eq!(entry.state, State::Failed);
    assert_eq!(r.failures()[0].skill.as_deref(), Some("s@1.0.0"));
    assert!(r.activate("s").is_err());
}

#[test]
fn an_unusable_index_is_reported_and_discovery_carries_on() {
    let skills = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write_skill(skills.path(), "s", "s", "1.0.0", "");
    let index = state.path().join("skills-index");
    std::fs::write(&index, "a file where the database should be").unwrap();
    let r = with_index(skills.path(), &index);
    assert!(r.index_unusable().is_some());
    assert_eq!(r.names(), ["s"]);
    assert!(r.activate("s").is_ok());
}

#[test]
fn disabled_versions_survive_a_restart() {
    let skills = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let index = state.path().join("skills-index");
    write_skill(skills.path(), "s", "s", "1.0.0", "");
    let r = with_index(skills.path(), &index);
    r.disable("s", "too slow").unwrap();
    drop(r);
    let r = with_index(skills.path(), &index);
    assert_eq!(r.list()[0].disabled.as_deref(), Some("too slow"));
    r.enable("s").unwrap();
    drop(r);
    assert_eq!(with_index(skills.path(), &index).list()[0].disabled, None);
}
