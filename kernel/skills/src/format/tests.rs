//! The public API: detection, files, cells, headers, and the native
//! format end to end.

use std::path::{Path, PathBuf};

use super::*;
use crate::model::{SkillBody, SkillKind};
use crate::Skill;

fn native(text: &str) -> Result<Skill, LoadError> {
    parse_str(
        text,
        SkillFormat::Native,
        Path::new("a/skill.yaml"),
        Origin::User,
    )
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const WORKFLOW: &str = "\
name: pros-and-cons
version: 1.2.0
description: Weighs a decision.
type: workflow
parameters:
  - name: audience
    type: enum
    values: [team, boss]
    default: team
phases:
  - id: pros
    template: \"Pros of {{ input }}\"
  - id: cons
    prompt_template: \"Cons of {{ input }}\"
    max_tokens: 40
  - id: verdict
    depends_on: [pros, cons]
    routing_profile: cheap
    template: |
      For {{ audience }}:
      {{ phases.pros }} / {{ phases.cons }}
max_parallel: 2
resilience:
  retries: 1
  timeout_secs: 60
dependencies:
  summarize: \"^1\"
";

#[test]
fn detects_formats_by_name_and_skillrunner_by_its_phases_line() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        detect(Path::new("/x/skill.yaml")),
        Some(SkillFormat::Native)
    );
    assert_eq!(
        detect(Path::new("/x/skill.json")),
        Some(SkillFormat::Native)
    );
    assert_eq!(
        detect(Path::new("/x/SKILL.md")),
        Some(SkillFormat::AgentSkills)
    );
    let sr = write(tmp.path(), "review.yaml", "id: r\nphases: [\n");
    assert_eq!(detect(&sr), Some(SkillFormat::Skillrunner));
    let other = write(tmp.path(), "config.yml", "name: x\n  phases: 1\n");
    assert_eq!(detect(&other), None);
    assert_eq!(detect(Path::new("/x/notes.md")), None);
}

#[test]
fn a_native_workflow_loads_with_its_graph_and_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "pros-and-cons/skill.yaml", WORKFLOW);
    let s = load_file(&file, Origin::Project).unwrap();
    assert_eq!(s.id(), "pros-and-cons@1.2.0");
    assert_eq!(s.resilience.retries, 1);
    assert_eq!(s.dependencies[0].name, "summarize");
    let SkillBody::Workflow(w) = &s.body else {
        panic!("a workflow")
    };
    assert_eq!((w.max_parallel, w.output.as_str()), (2, "verdict"));
    assert_eq!(w.phases[1].generation.max_tokens, Some(40));
    assert_eq!(w.phases[2].routing.profile.as_deref(), Some("cheap"));
    assert_eq!(s.source.path.as_deref(), Some(file.as_path()));
    let h = load_header(&file, Origin::Project).unwrap();
    assert_eq!(h, s.header());
}

#[test]
fn a_phase_may_not_read_a_sibling() {
    let text = WORKFLOW.replace("Cons of {{ input }}", "Cons of {{ phases.pros }}");
    let e = native(&text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("phases[1].prompt_template"));
    assert_eq!(e.line, Some(14));
}

#[test]
fn a_cell_defines_a_skill_in_yaml_or_json_without_a_path() {
    let cell = Path::new("<%%skill cell>");
    let yaml = "name: shout\ndescription: Shouts.\ntemplate: \"{{ input | upper }}\"\n";
    let s = parse_str(yaml, SkillFormat::Native, cell, Origin::Cell).unwrap();
    assert_eq!((s.kind(), s.source.path.clone()), (SkillKind::Prompt, None));
    assert_eq!(s.meta.version, UNVERSIONED);
    let json = r#"{"name": "shout", "description": "Shouts.", "template": "{{ inptu }}"}"#;
    let e = parse_str(json, SkillFormat::Native, cell, Origin::Cell).unwrap_err();
    assert_eq!((e.field.as_deref(), e.line), (Some("template"), Some(1)));
}

#[test]
fn oversized_and_non_utf8_files_are_refused_before_parsing() {
    let tmp = tempfile::tempdir().unwrap();
    let big = format!(
        "name: big\ndescription: d\ntemplate: x\n#{}\n",
        "x".repeat(MAX_MANIFEST_BYTES as usize)
    );
    let file = write(tmp.path(), "big/skill.yaml", &big);
    let e = load_file(&file, Origin::User).unwrap_err();
    assert!(
        e.message.contains("a skill manifest is at most"),
        "{}",
        e.message
    );
    let bad = tmp.path().join("bin/skill.yaml");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, b"name: a\n\xff\n").unwrap();
    assert_eq!(load_file(&bad, Origin::User).unwrap_err().line, Some(2));
}

#[test]
fn a_key_of_another_kind_names_the_type_it_belongs_to() {
    let text = "name: a\ndescription: d\ntemplate: x\nphases: []\n";
    let e = native(text).unwrap_err();
    assert_eq!(e.line, Some(4));
    assert_eq!(e.remedy, "set `type: workflow`, or remove `phases`");
}

#[test]
fn parameters_written_as_a_mapping_get_a_hint_with_their_shape() {
    let text = "name: a\ndescription: d\ntemplate: x\nparameters:\n  kind: {type: string}\n";
    let e = native(text).unwrap_err();
    assert!(e.remedy.contains("[{name: language"), "{}", e.remedy);
}

#[test]
fn a_network_host_that_is_not_a_host_is_a_load_error_naming_it() {
    let text = "name: f\ndescription: d\ntype: command\ncommand: curl\n\
                permissions: {network: [\"https://api.example.com\"]}\n";
    let e = native(text).unwrap_err();
    assert!(e.to_string().contains("not a host pattern"), "{e}");
    // The control: a host is fine.
    let text = text.replace("https://api.example.com", "api.example.com");
    native(&text).unwrap();
}

#[test]
fn command_skills_keep_their_sandbox_policy_raw() {
    let text = "name: ls\ndescription: Lists.\ntype: command\ncommand: ls\nargs: [-l]\ntimeout: 5\npermissions: {network: false}\nfallback:\n  command: dir\n";
    let s = native(text).unwrap();
    let SkillBody::Command(c) = &s.body else {
        panic!("a command")
    };
    assert_eq!(c.policy["timeout"], 5);
    assert_eq!(c.policy["permissions"]["network"], false);
    assert_eq!(c.fallback.as_ref().unwrap().command, "dir");
}

#[test]
fn an_empty_or_scalar_manifest_says_what_a_manifest_is() {
    for text in ["", "just text\n", "- a\n- b\n"] {
        let e = native(text).unwrap_err();
        assert!(
            e.message.starts_with("expected a mapping of fields"),
            "{text:?}: {}",
            e.message
        );
        assert!(e.remedy.contains("`name: …`"), "{}", e.remedy);
    }
}

#[test]
fn a_duplicate_key_is_a_yaml_error_at_its_line() {
    let text = "name: a\ndescription: d\nname: b\ntemplate: x\n";
    let e = native(text).unwrap_err();
    assert!(e.message.contains("duplicate key `name`"), "{}", e.message);
    assert_eq!(e.line, Some(3));
    let nested =
        "name: a\ndescription: d\ntemplate: x\nrouting:\n  model: m\n  profile: p\n  model: n\n";
    let e = native(nested).unwrap_err();
    assert_eq!(e.line, Some(7));
    let json = "{\n \"name\": \"a\",\n \"name\": \"b\"\n}";
    let e = parse_str(
        json,
        SkillFormat::Native,
        Path::new("a/skill.json"),
        Origin::User,
    )
    .unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.line),
        ("invalid JSON: duplicate key `name`", Some(3))
    );
}

#[test]
fn crlf_line_endings_keep_lines_exact() {
    let text = "name: a\r\ndescription: d\r\ntemplate: |\r\n  one\r\n  {{ nope }}\r\n";
    let e = native(text).unwrap_err();
    assert_eq!(e.line, Some(5));
    let tmp = tempfile::tempdir().unwrap();
    let md = "---\r\nname: a\r\ndescription: d\r\n---\r\nBe brief.\r\n";
    let file = write(tmp.path(), "a/SKILL.md", md);
    let s = load_file(&file, Origin::User).unwrap();
    let SkillBody::Agent(a) = &s.body else {
        panic!("an Agent Skill")
    };
    assert_eq!(a.instructions, "Be brief.");
}

#[test]
fn output_schemas_load_inline_from_json_text_and_from_a_file() {
    let inline = native(
        "name: extract\ndescription: Extracts.\ntemplate: \"{{ input }}\"\noutput_schema:\n  type: object\n  properties:\n    title: {type: string}\n  required: [title]\n",
    )
    .unwrap();
    let schema = inline.output.unwrap();
    assert_eq!(schema.schema()["required"][0], "title");
    let text = native(
        "name: extract\ndescription: Extracts.\ntemplate: \"{{ input }}\"\noutput_schema: '{\"type\": \"array\"}'\n",
    )
    .unwrap();
    assert_eq!(text.output.unwrap().schema()["type"], "array");

    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "s/person.json",
        r#"{"type": "object", "required": ["name"]}"#,
    );
    let manifest = write(
        tmp.path(),
        "s/skill.yaml",
        "name: person\ndescription: People.\ntype: workflow\noutput_schema: person.json\nphases:\n  - id: a\n    template: \"{{ input }}\"\n    output_schema: {type: object}\n  - id: b\n    depends_on: [a]\n    template: \"{{ phases.a.x }}\"\n",
    );
    let skill = load_file(&manifest, Origin::User).unwrap();
    let SkillBody::Workflow(w) = &skill.body else {
        panic!("a workflow")
    };
    assert_eq!(
        w.phases[0].output.as_ref().unwrap().schema()["type"],
        "object"
    );
    assert_eq!(
        w.phases[1].output.as_ref().unwrap().schema()["required"][0],
        "name",
        "the skill's schema is its output phase's"
    );
}

#[test]
fn a_broken_output_schema_is_a_load_error_naming_the_field_and_the_schema_path() {
    let err = native(
        "name: extract\ndescription: Extracts.\ntype: workflow\nphases:\n  - id: a\n    template: \"{{ input }}\"\n    output_schema:\n      type: object\n      properties:\n        age: {type: numbr}\n",
    )
    .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("phases[0].output_schema"));
    assert!(err.message.contains("/properties/age"), "{}", err.message);
    assert!(err.line.is_some());
    let outside = native(
        "name: extract\ndescription: Extracts.\ntemplate: x\noutput_schema: ../../etc/schema.json\n",
    )
    .unwrap_err();
    assert!(
        outside.message.contains("outside the skill's folder"),
        "{}",
        outside.message
    );
    let missing =
        native("name: extract\ndescription: Extracts.\ntemplate: x\noutput_schema: nowhere.json\n")
            .unwrap_err();
    assert!(
        missing.message.contains("nowhere.json"),
        "{}",
        missing.message
    );
    let on_a_command =
        native("name: run\ndescription: Runs.\ntype: command\ncommand: ls\noutput_schema: {}\n")
            .unwrap_err();
    assert!(
        on_a_command.message.contains("belongs to"),
        "{}",
        on_a_command.message
    );
}

#[test]
fn tools_load_as_skill_names_or_mappings_with_their_limits() {
    let skill = native(
        "name: helper\ndescription: Helps.\ntemplate: \"{{ input }}\"\ntools: [summarize, {skill: translate, description: Translates text.}]\nmax_steps: 4\ntool_choice: required\ntool_timeout_secs: 5\n",
    )
    .unwrap();
    let names: Vec<&str> = skill.tools.skills().collect();
    assert_eq!(names, ["summarize", "translate"]);
    assert_eq!(skill.tools.max_steps, 4);
    assert!(skill.tools.first_call_required);
    assert_eq!(skill.tools.tool_timeout, std::time::Duration::from_secs(5));

    let twice =
        native("name: helper\ndescription: Helps.\ntemplate: x\ntools: [a-b, a-b]\n").unwrap_err();
    assert!(twice.message.contains("twice"), "{}", twice.message);
    let unknown =
        native("name: helper\ndescription: Helps.\ntemplate: x\ntools: [{skil: a}]\n").unwrap_err();
    assert_eq!(
        unknown.field.as_deref(),
        Some("tools[0].skil"),
        "{unknown:?}"
    );
    let lonely =
        native("name: helper\ndescription: Helps.\ntemplate: x\nmax_steps: 3\n").unwrap_err();
    assert!(lonely.message.contains("no `tools`"), "{}", lonely.message);
    let choice =
        native("name: helper\ndescription: Helps.\ntemplate: x\ntools: [a]\ntool_choice: always\n")
            .unwrap_err();
    assert!(choice.remedy.contains("required"), "{choice:?}");
}

#[test]
fn mcp_servers_load_as_tools_and_bad_entries_name_the_field() {
    use crate::tools::ToolSource;
    let skill = native(
        "name: clock\ndescription: Tells the time.\ntemplate: x\ntools: [summarize, {mcp: time}, {mcp: git, tools: [git_log, git_status]}]\n",
    )
    .unwrap();
    assert_eq!(
        skill.tools.tools[1..],
        [
            ToolSource::Mcp {
                server: "time".into(),
                tools: vec![]
            },
            ToolSource::Mcp {
                server: "git".into(),
                tools: vec!["git_log".into(), "git_status".into()]
            }
        ]
    );
    for (tools, field, words) in [
        ("[{mcp: time}, {mcp: time}]", "tools[1]", "twice"),
        (
            "[{mcp: \"a b\"}]",
            "tools[0].mcp",
            "not an MCP server's name",
        ),
        ("[{mcp: x__y}]", "tools[0].mcp", "not an MCP server's name"),
        ("[{mcp: time, tools: []}]", "tools[0].tools", "no tools"),
        ("[{mcp: time, tools: [\"\"]}]", "tools[0].tools", "is empty"),
        ("[{mcp: time, tools: [a, a]}]", "tools[0].tools", "twice"),
        ("[{mcp: time, skill: x}]", "tools[0].mcp", "no `skill`"),
        (
            "[{skill: x, tools: [a]}]",
            "tools[0].tools",
            "belongs to an `mcp` tool",
        ),
    ] {
        let e = native(&format!(
            "name: clock\ndescription: Tells.\ntemplate: x\ntools: {tools}\n"
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{tools}: {e:?}");
        assert!(e.message.contains(words), "{tools}: {}", e.message);
    }
}
