//! The skill corpora on disk: every broken manifest under
//! `tests/skill-corpus/broken/` fails to load with exactly the error
//! `broken.yaml` expects (file, field, line, a message fragment and a
//! remedy); every skill under `tests/skill-corpus/valid/` and
//! `examples/skills/` loads, and its header agrees with the full load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use skillkernel_skills::format::{self, MAX_MANIFEST_BYTES};
use skillkernel_skills::model::{Origin, ParamKind, SkillBody, SkillFormat, SkillKind};
use skillkernel_skills::{LoadError, Skill};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/skill-corpus")
}

/// Every skill file under `dir`, by [`format::detect`].
fn skill_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if format::detect(&path).is_some() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    file: String,
    field: Option<String>,
    line: Option<usize>,
    message: String,
    remedy: String,
}

fn check(case: &str, path: &Path, expected: &Expected, e: &LoadError) -> Vec<String> {
    let mut problems = Vec::new();
    if e.file != path {
        problems.push(format!("file {:?}", e.file));
    }
    if e.field != expected.field {
        problems.push(format!("field {:?}", e.field));
    }
    if e.line != expected.line {
        problems.push(format!("line {:?}", e.line));
    }
    if !e.message.contains(&expected.message) {
        problems.push(format!("message {:?}", e.message));
    }
    if e.remedy.is_empty() || !e.remedy.contains(&expected.remedy) {
        problems.push(format!("remedy {:?}", e.remedy));
    }
    problems
        .into_iter()
        .map(|p| format!("{case}: {p}"))
        .collect()
}

#[test]
fn every_broken_manifest_fails_with_its_exact_error() {
    let dir = corpus().join("broken");
    let text = std::fs::read_to_string(corpus().join("broken.yaml")).unwrap();
    let expectations: BTreeMap<String, Expected> = serde_norway::from_str(&text).unwrap();
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert_eq!(
        cases,
        expectations.keys().cloned().collect::<Vec<_>>(),
        "every case folder has one expectation in broken.yaml, and back"
    );
    let mut problems = Vec::new();
    for (case, expected) in &expectations {
        let path = dir.join(case).join(&expected.file);
        assert_eq!(
            skill_files(&dir.join(case)),
            vec![path.clone()],
            "{case}: one skill file"
        );
        match format::load_file(&path, Origin::Configured) {
            Ok(_) => problems.push(format!("{case}: loaded")),
            Err(e) => problems.extend(check(case, &path, expected, &e)),
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn an_oversized_manifest_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("oversized/skill.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let padding = "# padding\n".repeat(MAX_MANIFEST_BYTES as usize / 10 + 1);
    std::fs::write(
        &path,
        format!("name: oversized\ndescription: d\ntemplate: x\n{padding}"),
    )
    .unwrap();
    let e = format::load_file(&path, Origin::User).unwrap_err();
    assert!(
        e.message.contains("a skill manifest is at most 262144"),
        "{}",
        e.message
    );
    assert_eq!(format::load_header(&path, Origin::User).unwrap_err(), e);
}

fn load_all(dir: &Path) -> Vec<Skill> {
    let files = skill_files(dir);
    assert!(!files.is_empty(), "no skills under {}", dir.display());
    files
        .iter()
        .map(|f| {
            let skill = format::load_file(f, Origin::Configured)
                .unwrap_or_else(|e| panic!("{} does not load: {e}", f.display()));
            let header = format::load_header(f, Origin::Configured).unwrap();
            assert_eq!(header, skill.header(), "{}", f.display());
            skill
        })
        .collect()
}

#[test]
fn every_valid_manifest_loads() {
    let skills = load_all(&corpus().join("valid"));
    let formats: Vec<SkillFormat> = skills.iter().map(|s| s.source.format).collect();
    for f in [
        SkillFormat::Native,
        SkillFormat::AgentSkills,
        SkillFormat::Skillrunner,
    ] {
        assert!(formats.contains(&f), "the valid corpus has a {f:?} skill");
    }
    let by_name = |n: &str| skills.iter().find(|s| s.meta.name == n).unwrap();
    let json = by_name("json-workflow");
    assert_eq!(json.meta.version.to_string(), "0.3.1-beta.1");
    assert_eq!(json.dependencies[1].version.to_string(), "*");
    let agent = by_name("agent-with-scripts");
    assert_eq!(
        agent.meta.version,
        format::UNVERSIONED,
        "a non-semver metadata.version"
    );
    let SkillBody::Agent(a) = &agent.body else {
        panic!("an Agent Skill")
    };
    assert!(
        a.instructions.contains("{{ this }}"),
        "instructions are not templates"
    );
    let SkillBody::Command(c) = &by_name("command-skill").body else {
        panic!("a command skill")
    };
    assert_eq!(
        c.policy.keys().collect::<Vec<_>>(),
        ["permissions", "timeout", "retries"]
    );
}

#[test]
fn every_example_loads_and_the_set_covers_the_issue() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/skills");
    let skills = load_all(&dir);
    let by_name = |n: &str| {
        skills
            .iter()
            .find(|s| s.meta.name == n)
            .unwrap_or_else(|| panic!("example `{n}`"))
    };
    assert_eq!(by_name("summarize").kind(), SkillKind::Prompt);
    let language = by_name("translate").parameter("language").unwrap();
    assert!(matches!(language.kind, ParamKind::Enum(_)));
    assert_eq!(by_name("commit-message").kind(), SkillKind::Workflow);
    let SkillBody::Conversation(review) = &by_name("code-review").body else {
        panic!("code-review is a conversation")
    };
    assert!(!review.context.include.is_empty() && !review.context.exclude.is_empty());
    let SkillBody::Workflow(w) = &by_name("pros-cons").body else {
        panic!("pros-cons is a workflow")
    };
    let roots = w.phases.iter().filter(|p| p.depends_on.is_empty()).count();
    assert!(roots >= 2 && w.max_parallel >= 2, "parallel phases");
    let SkillBody::Agent(style) = &by_name("style-guide").body else {
        panic!("style-guide is an Agent Skill")
    };
    assert_eq!(style.resources, vec![PathBuf::from("references/words.md")]);
    assert_eq!(
        by_name("explain-code").source.format,
        SkillFormat::Skillrunner
    );
    // Sized for a tiny local model: every call asks for few tokens.
    for s in &skills {
        let mut budgets = vec![s.generation.max_tokens];
        if let SkillBody::Workflow(w) = &s.body {
            budgets.extend(w.phases.iter().map(|p| p.generation.max_tokens));
        }
        assert!(
            budgets.iter().flatten().all(|&n| n <= 256),
            "{}: keep max_tokens small",
            s.id()
        );
    }
}
