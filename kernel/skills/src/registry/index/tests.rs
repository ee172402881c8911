use super::*;
use crate::registry::tests::fixtures::header;

fn entry(name: &str) -> IndexEntry {
    IndexEntry {
        stamp: Stamp {
            mtime_ns: 1_700_000_000_123_456_789,
            size: 42,
            blake3: *blake3::hash(name.as_bytes()).as_bytes(),
        },
        header: header(name, "1.2.3"),
    }
}

/// An index at `at` holding `/s/NAME/skill.yaml` for each name, flushed
/// and closed.
fn written(at: &Path, names: &[&str]) {
    let index = Index::open(at).unwrap();
    for name in names {
        let path = PathBuf::from(format!("/s/{name}/skill.yaml"));
        index.put(&path, &entry(name)).unwrap();
    }
    index.flush().unwrap();
}

#[test]
fn entries_and_disabled_versions_survive_a_reopen() {
    let t = tempfile::tempdir().unwrap();
    let at = t.path().join("skills-index");
    written(&at, &["a", "b"]);
    {
        let index = Index::open(&at).unwrap();
        index.remove(Path::new("/s/b/skill.yaml")).unwrap();
        index.set_disabled("a@1.2.3", Some("too slow")).unwrap();
        index.flush().unwrap();
    }
    let index = Index::open(&at).unwrap();
    assert_eq!(
        index.get(Path::new("/s/a/skill.yaml")).unwrap(),
        Some(entry("a"))
    );
    assert_eq!(index.paths().unwrap(), [PathBuf::from("/s/a/skill.yaml")]);
    assert_eq!(
        index.disabled().unwrap(),
        [("a@1.2.3".to_string(), "too slow".to_string())]
    );
}

#[test]
fn an_index_locked_by_another_opener_is_switched_off_with_its_reason() {
    let t = tempfile::tempdir().unwrap();
    let at = t.path().join("skills-index");
    let _holder = Index::open(&at).unwrap();
    let handle = IndexHandle::open(Some(&at));
    assert!(handle.with(|i| i.paths()).is_none());
    let reason = handle.unusable_reason().unwrap();
    assert!(
        reason.starts_with("cannot open the skill index"),
        "{reason}"
    );
}

#[test]
fn an_index_path_that_is_a_file_is_switched_off() {
    let t = tempfile::tempdir().unwrap();
    let at = t.path().join("skills-index");
    std::fs::write(&at, b"not a database").unwrap();
    let handle = IndexHandle::open(Some(&at));
    assert!(handle.with(|i| i.paths()).is_none());
    assert!(handle.unusable_reason().is_some());
}

#[test]
fn an_index_whose_files_are_garbage_is_switched_off() {
    let t = tempfile::tempdir().unwrap();
    let at = t.path().join("skills-index");
    written(&at, &["a"]);
    for file in std::fs::read_dir(&at).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, [0x5a; 256]).unwrap();
        }
    }
    let handle = IndexHandle::open(Some(&at));
    assert!(handle.with(|i| i.paths()).is_none());
    let reason = handle.unusable_reason().unwrap();
    assert!(reason.contains("corrupted"), "{reason}");
}

#[test]
fn a_panic_inside_the_index_switches_it_off() {
    let t = tempfile::tempdir().unwrap();
    let handle = IndexHandle::open(Some(&t.path().join("i")));
    let out: Option<()> = handle.with(|_| panic!("sled bug"));
    assert!(out.is_none());
    assert_eq!(
        handle.unusable_reason().as_deref(),
        Some("the skill index failed unexpectedly: sled bug")
    );
    assert!(handle.with(|i| i.paths()).is_none());
}

#[test]
fn a_garbled_entry_reads_as_missing() {
    let t = tempfile::tempdir().unwrap();
    let index = Index::open(&t.path().join("i")).unwrap();
    index
        .manifests
        .insert(b"/s/x/skill.yaml", &b"{garbage"[..])
        .unwrap();
    assert_eq!(index.get(Path::new("/s/x/skill.yaml")).unwrap(), None);
}
