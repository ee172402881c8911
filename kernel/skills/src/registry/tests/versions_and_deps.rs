use super::fixtures::*;
use crate::model::Origin;
use crate::registry::State;
use crate::ErrorCode;

#[test]
fn semver_selection_and_not_found_hints() {
    let t = tempfile::tempdir().unwrap();
    for v in ["0.3.1", "0.4.9", "1.2.0", "1.2.7", "2.0.0"] {
        write_skill(t.path(), &format!("outline-{v}"), "outline", v, "");
    }
    let (r, _) = open(&[t.path()]);
    let id = |spec: &str| r.get(spec).map(|e| e.id).unwrap_or_else(|e| e.to_string());
    assert_eq!(id("outline"), "outline@2.0.0");
    assert_eq!(id("outline@1.2"), "outline@1.2.7");
    assert_eq!(id("outline@1.2.0"), "outline@1.2.0");
    assert_eq!(id("outline@^1"), "outline@1.2.7");
    assert_eq!(id("outline@>=0.3,<0.5"), "outline@0.4.9");

    let e = r.get("outline@^3").unwrap_err();
    assert_eq!(e.code, ErrorCode::SkillNotFound);
    assert_eq!(
        e.hint,
        "versions present: 0.3.1, 0.4.9, 1.2.0, 1.2.7, 2.0.0; ask for one of them, e.g. `outline@2.0.0`"
    );
    let e = r.get("outlien").unwrap_err();
    assert_eq!(e.message, "no skill named `outlien`");
    assert_eq!(
        e.hint,
        "did you mean `outline`? `%skill list` shows every skill"
    );
    assert_eq!(
        r.info("outline@1.2")
            .unwrap()
            .versions
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>(),
        ["2.0.0", "1.2.7", "1.2.0", "0.4.9", "0.3.1"]
    );
}

#[test]
fn a_disabled_version_is_listed_but_the_next_enabled_one_is_selected() {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "a1", "tool", "1.0.0", "");
    write_skill(t.path(), "a2", "tool", "2.0.0", "");
    let (r, _) = open(&[t.path()]);
    assert_eq!(
        r.disable("tool@2", "crashes the model").unwrap(),
        ["tool@2.0.0"]
    );
    assert_eq!(r.get("tool").unwrap().id, "tool@1.0.0");
    let listed = r.list();
    assert_eq!(listed[0].disabled.as_deref(), Some("crashes the model"));
    let e = r.activate("tool@2").unwrap_err();
    assert_eq!(e.message, "`tool@2.0.0` is disabled: crashes the model");
    assert_eq!(r.enable("tool").unwrap(), ["tool@2.0.0", "tool@1.0.0"]);
    assert_eq!(r.get("tool").unwrap().id, "tool@2.0.0");
}

#[test]
fn dependencies_resolve_to_present_versions_at_init() {
    let t = tempfile::tempdir().unwrap();
    write_skill(
        t.path(),
        "report",
        "report",
        "1.0.0",
        "dependencies:\n  summarize: \"^1\"\n  outline: \">=0.3, <0.5\"\n",
    );
    write_skill(t.path(), "summarize-1", "summarize", "1.3.0", "");
    write_skill(t.path(), "summarize-2", "summarize", "2.0.0", "");
    write_skill(t.path(), "outline", "outline", "0.4.0", "");
    let (r, _) = open(&[t.path()]);
    r.activate("report").unwrap();
    let info = r.info("report").unwrap();
    assert_eq!(info.resolved, ["outline@0.4.0", "summarize@1.3.0"]);
    let hooks: Vec<String> = info
        .history
        .iter()
        .map(|t| format!("{}:{}", t.hook, t.to))
        .collect();
    assert_eq!(
        hooks,
        [
            "load:Loaded",
            "init:Initializing",
            "init:Ready",
            "activate:Active"
        ]
    );
    // The dependencies were loaded (a broken one would have failed init).
    assert_eq!(r.get("summarize@1.3.0").unwrap().state, State::Loaded);
    assert_eq!(r.info("summarize@1").unwrap().dependents, ["report@1.0.0"]);
    assert!(r.info("summarize@2").unwrap().dependents.is_empty());
}

#[test]
fn a_cycle_fails_init_with_its_path() {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "a", "a", "1.0.0", "dependencies:\n  b: \"^1\"\n");
    write_skill(t.path(), "b", "b", "1.1.0", "dependencies:\n  a: \"*\"\n");
    let (r, _) = open(&[t.path()]);
    let e = r.activate("a").unwrap_err();
    assert_eq!(e.code, ErrorCode::DependencyError);
    assert_eq!(e.message, "dependency cycle: a@1.0.0 → b@1.1.0 → a@1.0.0");
    let got = r.get("a").unwrap();
    assert_eq!(got.state, State::Failed);
    assert_eq!(got.error.unwrap().message, e.message);
}

#[test]
fn a_missing_dependency_fails_init_and_init_is_retried_once_it_exists() {
    let t = tempfile::tempdir().unwrap();
    write_skill(
        t.path(),
        "a",
        "a",
        "1.0.0",
        "dependencies:\n  helper: \"^1\"\n",
    );
    let (r, _) = open(&[t.path()]);
    let e = r.activate("a").unwrap_err();
    assert_eq!(
        e.message,
        "`a@1.0.0` depends on `helper` (^1), but no skill named `helper` exists"
    );
    assert_eq!(
        e.hint,
        "add `helper` to a skill directory, or remove the dependency"
    );
    write_skill(t.path(), "helper", "helper", "1.0.0", "");
    r.discover();
    assert!(r.activate("a").is_ok());
    assert_eq!(r.get("a").unwrap().state, State::Active);
}

#[test]
fn conflicting_requirements_and_a_broken_dependency_are_dependency_errors() {
    let t = tempfile::tempdir().unwrap();
    write_skill(
        t.path(),
        "app",
        "app",
        "1.0.0",
        "dependencies:\n  left: \"*\"\n  right: \"*\"\n",
    );
    write_skill(
        t.path(),
        "left",
        "left",
        "1.0.0",
        "dependencies:\n  util: \"^1\"\n",
    );
    write_skill(
        t.path(),
        "right",
        "right",
        "1.0.0",
        "dependencies:\n  util: \"^2\"\n",
    );
    write_skill(t.path(), "util-1", "util", "1.0.0", "");
    write(
        t.path(),
        "util-2/skill.yaml",
        "name: util\nversion: 2.0.0\ndescription: d\ntype: prompt\ntemplate: \"{{ nope }}\"\n",
    );
    write_skill(
        t.path(),
        "uses-broken",
        "uses-broken",
        "1.0.0",
        "dependencies:\n  util: \"^2\"\n",
    );
    let (r, _) = open(&[t.path()]);
    let e = r.activate("app").unwrap_err();
    assert_eq!(
        e.message,
        "`left@1.0.0` needs `util` ^1 and `right@1.0.0` needs `util` ^2; no version of `util` \
         satisfies both (present: 1.0.0, 2.0.0)"
    );
    let e = r.activate("uses-broken").unwrap_err();
    assert_eq!(e.code, ErrorCode::DependencyError);
    assert!(
        e.message
            .starts_with("dependency `util@2.0.0` of `uses-broken@1.0.0` does not load: "),
        "{}",
        e.message
    );
}

#[test]
fn a_cell_skill_is_preferred_for_its_name_and_never_persisted() {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "s", "summarize", "1.0.0", "");
    let (r, _) = open(&[t.path()]);
    assert_eq!(
        r.register_inline(skill("summarize", "0.1.0")),
        "summarize@0.1.0"
    );
    let got = r.get("summarize").unwrap();
    assert_eq!(
        (got.id.as_str(), got.header.source.origin),
        ("summarize@0.1.0", Origin::Cell)
    );
    assert_eq!(got.state, State::Loaded, "a cell is parsed already");
    // A version the cell does not have still reaches the files.
    assert_eq!(
        r.get("summarize@1").unwrap().header.source.origin,
        Origin::Configured
    );
    assert_eq!(r.activate("summarize").unwrap().source.origin, Origin::Cell);
    // Re-running the cell replaces its definition.
    r.register_inline(skill("summarize", "0.2.0"));
    assert_eq!(r.get("summarize").unwrap().id, "summarize@0.2.0");
    assert_eq!(
        r.search("summarize").unwrap()[0].entry.header.source.origin,
        Origin::Cell
    );
    assert!(r.remove_inline("summarize"));
    assert_eq!(r.get("summarize").unwrap().id, "summarize@1.0.0");
}

#[test]
fn search_gives_one_hit_per_name_with_its_versions_best_match_first() {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "r1", "review", "1.0.0", "tags: [code]\n");
    write_skill(t.path(), "r2", "review", "2.1.0", "tags: [code]\n");
    write_skill(t.path(), "cr", "code-review", "0.3.0", "author: Ana Lima\n");
    write_skill(t.path(), "x", "explain-code", "1.0.0", "");
    let (r, _) = open(&[t.path()]);
    let hits = r.search("review").unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.entry.id.as_str()).collect();
    assert_eq!(ids, ["review@2.1.0", "code-review@0.3.0"]);
    let versions: Vec<String> = hits[0].versions.iter().map(|v| v.to_string()).collect();
    assert_eq!(versions, ["2.1.0", "1.0.0"]);
    assert_eq!(
        r.search("author:ana").unwrap()[0].entry.id,
        "code-review@0.3.0"
    );
    r.disable("review@2", "broken model").unwrap();
    let hit = &r.search("review").unwrap()[0];
    assert_eq!(
        hit.entry.id, "review@1.0.0",
        "the version `get` would select"
    );
    assert_eq!(
        r.search("tga:code").unwrap_err().code,
        ErrorCode::ValidationError
    );
}
