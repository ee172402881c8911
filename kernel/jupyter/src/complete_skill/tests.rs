use std::path::Path;

use super::*;
use skillkernel_skills::config::SkillsConfig;
use skillkernel_skills::format;
use skillkernel_skills::model::{Origin, SkillFormat};
use skillkernel_skills::service::SkillsSetup;

const TRANSLATE: &str = "name: translate
version: 1.0.0
description: Translates a text.
type: prompt
parameters:
  - name: language
    type: enum
    values: [French, German]
    default: French
    description: The language to translate into.
  - name: tone
    type: enum
    values: [plain, very formal]
  - name: literal
    type: bool
  - name: words
    type: number
    required: true
template: \"{{ language }} {{ tone }} {{ literal }} {{ words }} {{ input }}\"
";

/// Skills with `translate` and `tally` (no parameters), no directories.
fn skills(dir: &Path) -> Skills {
    let setup = SkillsSetup {
        config: SkillsConfig {
            project: false,
            user_dir: Some(dir.join("no-user-dir")),
            builtin: false,
            watch: false,
            index: false,
            ..SkillsConfig::default()
        },
        working_dir: dir.to_path_buf(),
        index_path: None,
        trust_store: None,
    };
    let (skills, _) = Skills::open(&setup);
    for text in [
        TRANSLATE,
        "name: tally\nversion: 0.1.0\ndescription: Counts.\ntype: prompt\ntemplate: \"{{ input }}\"\n",
    ] {
        let skill = format::parse_str(text, SkillFormat::Native, Path::new("<test>"), Origin::Cell)
            .unwrap_or_else(|e| panic!("{e}"));
        skills.registry.register_inline(skill);
    }
    skills
}

fn at_end(line: &str, first_line: bool) -> Option<Position> {
    let word_start = line.rfind(' ').map_or(0, |i| i + 1);
    position(line, word_start, first_line)
}

fn argument(skill: &str, given: &[&str]) -> Option<Position> {
    Some(Position::Argument {
        skill: skill.into(),
        given: given.iter().map(|g| (*g).to_owned()).collect(),
    })
}

#[test]
fn skill_names_follow_run_cells_and_name_taking_subcommands() {
    assert_eq!(at_end("%%run tr", true), Some(Position::Name));
    assert_eq!(at_end("%%run ", true), Some(Position::Name));
    for sub in NAME_SUBCOMMANDS {
        assert_eq!(
            at_end(&format!("%skill {sub} x"), false),
            Some(Position::Name),
            "{sub}"
        );
    }
    assert_eq!(at_end("%%run tr", false), None, "%%run only opens a cell");
    assert_eq!(at_end("%skill search tr", false), None);
    assert_eq!(at_end("%skill info translate x", false), None);
    assert_eq!(at_end("%skill ", false), None, "the subcommand comes first");
    assert_eq!(at_end("%model use x", false), None);
}

#[test]
fn arguments_follow_the_skill_name_until_the_input_separator() {
    assert_eq!(at_end("%%run translate ", true), argument("translate", &[]));
    assert_eq!(
        at_end("%skill run translate@^1 language=German lit", false),
        argument("translate@^1", &["language"])
    );
    assert_eq!(
        at_end("%%run translate tone=\"very formal\" w", true),
        argument("translate", &["tone"])
    );
    assert_eq!(at_end("%skill run translate -- some inp", false), None);
    assert_eq!(
        at_end("%%run translate tone=\"very formal", true),
        None,
        "inside a quoted value"
    );
}

#[test]
fn names_come_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let skills = skills(dir.path());
    assert_eq!(
        candidates(&skills.registry, &Position::Name, "t"),
        (0, vec!["tally".to_owned(), "translate".to_owned()])
    );
}

#[test]
fn parameters_not_yet_given_are_offered_as_name_equals() {
    let dir = tempfile::tempdir().unwrap();
    let skills = skills(dir.path());
    let (offset, names) = candidates(
        &skills.registry,
        &argument("translate", &["tone"]).unwrap(),
        "",
    );
    assert_eq!(offset, 0);
    assert_eq!(names, ["language=", "literal=", "words="]);
    let none = candidates(&skills.registry, &argument("nosuch", &[]).unwrap(), "");
    assert_eq!(none, (0, Vec::new()), "an unknown skill has no parameters");
}

#[test]
fn values_follow_name_equals_for_enums_and_bools_only() {
    let dir = tempfile::tempdir().unwrap();
    let skills = skills(dir.path());
    let at = argument("translate", &[]).unwrap();
    assert_eq!(
        candidates(&skills.registry, &at, "language=Ge"),
        (9, vec!["French".to_owned(), "German".to_owned()])
    );
    assert_eq!(
        candidates(&skills.registry, &at, "tone="),
        (5, vec!["plain".to_owned(), "\"very formal\"".to_owned()]),
        "a value with a space is quoted to stay one argument"
    );
    assert_eq!(
        candidates(&skills.registry, &at, "literal=").1,
        ["true", "false"]
    );
    assert!(candidates(&skills.registry, &at, "words=").1.is_empty());
}

#[test]
fn inspecting_a_name_shows_skill_info_and_a_parameter_its_help() {
    let dir = tempfile::tempdir().unwrap();
    let skills = skills(dir.path());
    let page = inspect(&skills, &Position::Name, "translate").unwrap();
    assert!(
        page.starts_with("**translate** 1.0.0 — prompt skill"),
        "{page}"
    );
    assert!(
        page.contains("| `language` | enum (French, German) | no | French |"),
        "{page}"
    );
    assert_eq!(inspect(&skills, &Position::Name, "nosuch"), None);

    let at = argument("translate", &[]).unwrap();
    assert_eq!(
        inspect(&skills, &at, "language=Ger").unwrap(),
        "**language** — enum parameter of skill **translate** (optional, default `French`)\n\n\
         Values: `French`, `German`\n\nThe language to translate into.\n"
    );
    assert_eq!(
        inspect(&skills, &at, "words").unwrap(),
        "**words** — number parameter of skill **translate** (required)\n\n"
    );
    assert_eq!(inspect(&skills, &at, "nosuch"), None);
}
