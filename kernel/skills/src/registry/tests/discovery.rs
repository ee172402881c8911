use super::fixtures::*;
use crate::model::{Origin, SkillKind};
use crate::registry::{RegistryConfig, SkillRegistry, State};
use crate::ErrorCode;

#[test]
fn project_shadows_configured_shadows_user_shadows_builtin_for_one_name_and_version() {
    let wd = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let user = tempfile::tempdir().unwrap();
    let project = wd.path().join(".skillkernel/skills");
    for (root, folder) in [
        (&project, "s"),
        (&conf.path().to_path_buf(), "s"),
        (&user.path().to_path_buf(), "s"),
    ] {
        write_skill(root, folder, "summarize", "1.0.0", "");
    }
    write_skill(user.path(), "only-user", "only-user", "0.1.0", "");
    let mut config = RegistryConfig::new(wd.path());
    config.dirs = vec![conf.path().to_path_buf()];
    config.user_dir = Some(user.path().to_path_buf());
    config.watch = false;
    let (registry, report) = SkillRegistry::open(config);
    assert!(report.failed.is_empty(), "{report}");
    let rows = listing(&registry);
    let summarize: Vec<&String> = rows
        .iter()
        .filter(|r| r.starts_with("summarize@1.0.0"))
        .collect();
    assert_eq!(
        summarize,
        [
            "summarize@1.0.0 project",
            "summarize@1.0.0 configured (shadowed by project)",
            "summarize@1.0.0 user (shadowed by project)",
            "summarize@1.0.0 builtin (shadowed by project)",
        ]
    );
    let got = registry.get("summarize").unwrap();
    assert_eq!(got.header.source.origin, Origin::Project);
    assert_eq!(got.header.source.path, Some(project.join("s/skill.yaml")));
    let info = registry.info("summarize@1.0.0").unwrap();
    let shadowed: Vec<Origin> = info.shadowed.iter().map(|s| s.origin).collect();
    assert_eq!(
        shadowed,
        [Origin::Configured, Origin::User, Origin::Builtin]
    );
    assert!(rows.contains(&"only-user@0.1.0 user".to_string()));
    assert!(rows.contains(&"explain@1.0.0 builtin".to_string()));
}

#[test]
fn earlier_configured_directories_shadow_later_ones() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_skill(a.path(), "x", "tool", "1.0.0", "");
    write_skill(b.path(), "x", "tool", "1.0.0", "");
    let (registry, _) = open(&[a.path(), b.path()]);
    let got = registry.get("tool").unwrap();
    assert_eq!(got.header.source.path, Some(a.path().join("x/skill.yaml")));
    assert_eq!(registry.list()[1].shadowed_by, Some(Origin::Configured));
}

#[test]
fn two_folders_with_one_name_are_two_versions_side_by_side() {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "translate-v1", "translate", "1.4.0", "");
    write_skill(t.path(), "translate-v2", "translate", "2.0.1", "");
    let (registry, _) = open(&[t.path()]);
    assert_eq!(
        listing(&registry),
        ["translate@2.0.1 configured", "translate@1.4.0 configured"]
    );
    assert_eq!(registry.get("translate").unwrap().id, "translate@2.0.1");
    assert_eq!(registry.get("translate@1").unwrap().id, "translate@1.4.0");
    assert_eq!(
        registry
            .activate("translate@^1")
            .unwrap()
            .meta
            .version
            .to_string(),
        "1.4.0"
    );
}

#[test]
fn a_broken_skill_is_recorded_and_the_good_ones_still_load_and_run() {
    let t = tempfile::tempdir().unwrap();
    write_skill(t.path(), "good", "good", "1.0.0", "");
    write(t.path(), "bad-yaml/skill.yaml", "name: [unclosed\n");
    // The header loads; the template does not (a misspelt variable).
    write(
        t.path(),
        "bad-template/skill.yaml",
        "name: bad-template\nversion: 1.0.0\ndescription: d\ntype: prompt\ntemplate: \"{{ inptu }}\"\n",
    );
    write_skill(t.path(), "also-good", "also-good", "1.0.0", "");
    let (registry, report) = open(&[t.path()]);
    assert_eq!(
        report.added,
        ["also-good@1.0.0", "bad-template@1.0.0", "good@1.0.0"]
    );
    assert_eq!(report.failed.len(), 1, "{report}");
    assert_eq!(
        report.failed[0].path,
        Some(t.path().join("bad-yaml/skill.yaml"))
    );
    assert_eq!(report.failed[0].skill, None);

    assert!(registry.activate("good").is_ok());
    assert!(registry.activate("also-good").is_ok());
    let e = registry.activate("bad-template").unwrap_err();
    assert_eq!(e.code, ErrorCode::ValidationError);
    assert!(e.message.contains("inptu"), "{}", e.message);
    assert_eq!(registry.get("bad-template").unwrap().state, State::Failed);
    let failures: Vec<(Option<String>, bool)> = registry
        .failures()
        .into_iter()
        .map(|f| (f.skill, f.path.is_some()))
        .collect();
    assert_eq!(
        failures,
        [(None, true), (Some("bad-template@1.0.0".into()), true)]
    );
    // The files' own errors, with file, field and line, for the notebook.
    let errors: Vec<_> = registry
        .failures()
        .into_iter()
        .map(|f| f.load_error.unwrap())
        .collect();
    assert_eq!(errors[0].file, t.path().join("bad-yaml/skill.yaml"));
    assert_eq!(errors[0].line, Some(2), "the YAML parser stops at the end");
    assert_eq!(errors[1].file, t.path().join("bad-template/skill.yaml"));
    assert_eq!(
        (errors[1].field.as_deref(), errors[1].line),
        (Some("template"), Some(5))
    );
    // Still good after the failures.
    let guard = registry.begin_execution("good").unwrap();
    assert_eq!(guard.skill().meta.name, "good");
}

#[test]
fn loose_workflow_files_are_skills_and_other_yaml_is_ignored() {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "flows/release-notes.yaml",
        "id: release-notes\nname: Release notes\nversion: 0.2.0\nphases:\n  - id: draft\n    name: Draft\n    prompt_template: \"Notes for {{.input}}\"\n",
    );
    write(t.path(), "flows/settings.yaml", "colour: blue\n");
    let (registry, report) = open(&[t.path()]);
    assert!(report.failed.is_empty(), "{report}");
    assert_eq!(listing(&registry), ["release-notes@0.2.0 configured"]);
    assert_eq!(
        registry.get("release-notes").unwrap().header.kind,
        SkillKind::Workflow
    );
}

#[test]
fn builtins_are_offered_and_can_be_switched_off() {
    let mut config = RegistryConfig::only([]);
    config.builtins = true;
    let (registry, _) = SkillRegistry::open(config);
    assert_eq!(registry.names(), ["explain", "proofread", "summarize"]);
    assert!(registry.activate("proofread").is_ok());
    let (none, _) = SkillRegistry::open(RegistryConfig::only([]));
    assert!(none.names().is_empty());
}

#[test]
fn the_examples_and_valid_corpus_run_beside_the_broken_corpus() {
    let kernel = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = kernel.join("../../examples/skills");
    let valid = kernel.join("tests/skill-corpus/valid");
    let broken = kernel.join("tests/skill-corpus/broken");
    let (r, _) = open(&[&examples, &valid, &broken]);
    let under = |dir: &std::path::Path| -> Vec<String> {
        let in_dir = |e: &crate::registry::SkillEntry| {
            e.header
                .source
                .path
                .as_ref()
                .is_some_and(|p| p.starts_with(dir))
        };
        r.list()
            .into_iter()
            .filter(|e| e.shadowed_by.is_none() && in_dir(e))
            .map(|e| e.id)
            .collect()
    };
    let good = [under(&examples), under(&valid)].concat();
    assert!(good.len() >= 15, "{good:?}");
    for id in &good {
        match r.activate(id) {
            Ok(skill) => assert_eq!(&skill.id(), id),
            // Valid as a file; its dependency is not installed here.
            Err(e) => assert_eq!(
                (id.as_str(), e.code),
                ("json-workflow@0.3.1-beta.1", ErrorCode::DependencyError),
                "{e}"
            ),
        }
    }
    for id in under(&broken) {
        assert!(r.activate(&id).is_err(), "{id} is in the broken corpus");
    }
    let cases: std::collections::BTreeSet<std::path::PathBuf> = r
        .failures()
        .iter()
        .filter_map(|f| {
            f.path
                .as_ref()?
                .strip_prefix(&broken)
                .ok()?
                .iter()
                .next()
                .map(Into::into)
        })
        .collect();
    let all_cases = std::fs::read_dir(&broken).unwrap().count();
    assert_eq!(
        cases.len(),
        all_cases,
        "every broken case is reported: {cases:?}"
    );
}
