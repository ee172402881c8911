//! Agent Skills `SKILL.md` (agentskills.io): YAML frontmatter between
//! `---` lines, then Markdown instructions.
//!
//! The frontmatter follows the specification as its reference validator
//! (`skills-ref`) checks it: `name` (required, the name rule, equal to the
//! skill folder's name in NFKC form), `description` (required, 1–1024
//! characters), and optionally `license`, `compatibility` (at most 500
//! characters), `metadata` (strings to strings) and `allowed-tools` (one
//! space-separated string). Nothing else is accepted. The corpus in
//! `tests/conformance/agent_skills_corpus` holds us to the validator. The version is `metadata.version` when it is semver,
//! else [`UNVERSIONED`]; the author is `metadata.author`. The body becomes
//! the instructions; the other files of the folder (`scripts/`,
//! `references/`, `assets/` …) are listed as resources, never read.

use std::path::{Path, PathBuf};

use super::doc::{Doc, Obj};
use super::limits::{MAX_RESOURCES, MAX_RESOURCE_DEPTH, UNVERSIONED};
use super::validate;
use crate::error::LoadError;
use crate::model::{
    AgentSkill, Origin, Skill, SkillBody, SkillFormat, SkillHeader, SkillKind, SkillMeta, Source,
};

pub const FRONTMATTER_KEYS: &[&str] = &[
    "name",
    "description",
    "license",
    "compatibility",
    "metadata",
    "allowed-tools",
];

/// A `SKILL.md` split in two: the frontmatter YAML and the body.
struct Parts<'a> {
    yaml: &'a str,
    body: &'a str,
    /// The 1-based line the body starts on.
    body_line: usize,
}

fn split<'a>(file: &Path, text: &'a str) -> Result<Parts<'a>, LoadError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let shape = "start SKILL.md with a `---` line, the fields (`name:`, `description:`), a closing `---` line, then the instructions";
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some("---") {
        return Err(LoadError::new(
            file,
            "SKILL.md does not start with a `---` frontmatter line",
            shape,
        )
        .line(Some(1)));
    }
    let start = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut offset = start;
    for (i, line) in lines.enumerate() {
        if line.trim_end() == "---" {
            return Ok(Parts {
                yaml: &text[start..offset],
                body: &text[offset + line.len()..],
                body_line: i + 3,
            });
        }
        offset += line.len();
    }
    Err(LoadError::new(
        file,
        "the frontmatter is never closed by a `---` line",
        shape,
    )
    .line(Some(1)))
}

fn source(file: &Path, origin: Origin) -> Source {
    Source {
        format: SkillFormat::AgentSkills,
        path: (origin != Origin::Cell).then(|| file.to_path_buf()),
        origin,
    }
}

pub fn header(file: &Path, text: &str, origin: Origin) -> Result<SkillHeader, LoadError> {
    let parts = split(file, text)?;
    Ok(SkillHeader {
        meta: meta(file, &parts, origin)?,
        kind: SkillKind::Agent,
        parameters: Vec::new(),
        dependencies: Vec::new(),
        source: source(file, origin),
    })
}

pub fn skill(file: &Path, text: &str, origin: Origin) -> Result<Skill, LoadError> {
    let parts = split(file, text)?;
    let meta = meta(file, &parts, origin)?;
    let instructions = parts
        .body
        .trim_start_matches(['\r', '\n'])
        .trim_end()
        .to_string();
    if instructions.trim().is_empty() {
        return Err(LoadError::new(
            file,
            "SKILL.md has no instructions after its frontmatter",
            "write the instructions in Markdown below the closing `---`",
        )
        .line(Some(parts.body_line)));
    }
    let resources = match (origin, file.parent()) {
        (Origin::Cell, _) | (_, None) => Vec::new(),
        (_, Some(dir)) => resources(file, dir)?,
    };
    // Agent Skills metadata values are strings: inline JSON or a file path.
    let output = match meta.metadata.get("output_schema") {
        Some(written) => Some(super::output_schema::compile(
            &serde_json::Value::String(written.clone()),
            &super::output_schema::At {
                file,
                field: "metadata.output_schema".into(),
                line: text
                    .lines()
                    .position(|l| l.trim_start().starts_with("output_schema:"))
                    .map(|i| i + 1),
            },
        )?),
        None => None,
    };
    check_loop_metadata(file, text, &meta.metadata)?;
    let tools = super::tools::agent(&resources, &meta.allowed_tools, &meta.metadata);
    Ok(Skill {
        meta,
        parameters: Vec::new(),
        dependencies: Vec::new(),
        routing: Default::default(),
        generation: Default::default(),
        resilience: Default::default(),
        body: SkillBody::Agent(AgentSkill {
            instructions,
            resources,
        }),
        output,
        tools,
        source: source(file, origin),
    })
}

/// `metadata.max_steps` must be a count above 0, `metadata.tool_choice`
/// `auto` or `required`: a typo is a load error, not a silent default.
fn check_loop_metadata(
    file: &Path,
    text: &str,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<(), LoadError> {
    let line_of = |key: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(&format!("{key}:")))
            .map(|i| i + 1)
    };
    if let Some(n) = metadata.get("max_steps") {
        if n.trim().parse::<u32>().map_or(true, |n| n == 0) {
            return Err(LoadError::new(
                file,
                format!(
                    "`metadata.max_steps` is `{n}`; it must be a number of model calls above 0"
                ),
                "write it quoted, as metadata values are text: `max_steps: \"4\"`",
            )
            .field("metadata.max_steps")
            .line(line_of("max_steps")));
        }
    }
    if let Some(choice) = metadata.get("tool_choice") {
        if !matches!(choice.trim(), "auto" | "required") {
            return Err(LoadError::new(
                file,
                format!("`metadata.tool_choice` is `{choice}`; it must be `auto` or `required`"),
                "`required`: the first step must call a tool; `auto` (the default): the model decides",
            )
            .field("metadata.tool_choice")
            .line(line_of("tool_choice")));
        }
    }
    Ok(())
}

fn meta(file: &Path, parts: &Parts<'_>, origin: Origin) -> Result<SkillMeta, LoadError> {
    let doc = Doc {
        file,
        text: parts.yaml,
        json: false,
        line_offset: 1,
    };
    let value = doc.parse()?;
    let o = Obj::new(doc, "", &value).map_err(|e| e.line(Some(2)))?;
    for key in ["version", "author"] {
        if o.map.contains_key(key) {
            let message = format!("unknown field `{key}` in Agent Skills frontmatter");
            return Err(o.error(
                key,
                message,
                format!("put it under `metadata:` (`metadata:` then `  {key}: \"…\"`)"),
            ));
        }
    }
    o.deny_unknown(FRONTMATTER_KEYS, "Agent Skills frontmatter")?;
    let name = o.req_str("name", "add `name:`, the skill folder's name")?;
    validate::check_name(&doc, "name", name)?;
    let folder = file
        .parent()
        .and_then(Path::file_name)
        .and_then(|f| f.to_str());
    if let (Some(folder), false) = (folder, origin == Origin::Cell) {
        // Compared in NFKC form, as the reference validator does (macOS
        // keeps folder names decomposed).
        if validate::nfkc(folder) != validate::nfkc(name) {
            let remedy = if validate::name_problem(folder).is_none() {
                format!("rename the folder to `{name}`, or set `name: {folder}`")
            } else {
                format!("rename the folder to `{name}`")
            };
            return Err(doc.error(
                "name",
                format!("name `{name}` does not match its folder `{folder}`"),
                remedy,
            ));
        }
    }
    let description = o.req_str(
        "description",
        "add `description:` saying what the skill does and when to use it",
    )?;
    validate::check_description(&doc, "description", description)?;
    let compatibility = validate::compatibility(&o)?;
    let metadata: std::collections::BTreeMap<String, String> =
        o.str_map("metadata")?.into_iter().collect();
    let version = metadata
        .get("version")
        .and_then(|v| semver::Version::parse(v.trim()).ok())
        .unwrap_or(UNVERSIONED);
    Ok(SkillMeta {
        name: name.to_string(),
        version,
        description: description.to_string(),
        author: metadata.get("author").cloned(),
        license: o.str("license")?.map(str::to_string),
        tags: Vec::new(),
        category: None,
        compatibility,
        allowed_tools: o
            .str("allowed-tools")?
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        metadata,
    })
}

/// The files of the skill folder other than `SKILL.md`, relative to it,
/// sorted; hidden entries and symbolic links are skipped.
fn resources(file: &Path, dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), 0usize)];
    while let Some((folder, depth)) = todo.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| {
            LoadError::new(
                file,
                format!("cannot list {}: {e}", folder.display()),
                "check the folder's permissions",
            )
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if hidden || kind.is_symlink() || path == file {
                continue;
            }
            if kind.is_dir() && depth < MAX_RESOURCE_DEPTH {
                todo.push((path, depth + 1));
            } else if kind.is_file() {
                out.push(path.strip_prefix(dir).unwrap_or(&path).to_path_buf());
                if out.len() > MAX_RESOURCES {
                    return Err(LoadError::new(
                        file,
                        format!("the skill folder holds more than {MAX_RESOURCES} resource files"),
                        "keep only the scripts, references and assets the skill needs in its folder",
                    ));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = "---\nname: style-guide\ndescription: Applies the house style.\nallowed-tools: Read Grep\nmetadata:\n  version: \"1.2.0\"\n  author: docs-team\n---\n\n# Style\nUse short sentences.\n";

    #[test]
    fn loads_instructions_resources_and_version_from_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write(tmp.path(), "style-guide/SKILL.md", GOOD);
        write(tmp.path(), "style-guide/references/words.md", "x");
        write(tmp.path(), "style-guide/.hidden", "x");
        let s = skill(&file, GOOD, Origin::Project).unwrap();
        assert_eq!(s.id(), "style-guide@1.2.0");
        assert_eq!(s.meta.author.as_deref(), Some("docs-team"));
        assert_eq!(s.meta.allowed_tools, vec!["Read", "Grep"]);
        let SkillBody::Agent(a) = &s.body else {
            panic!("an agent skill")
        };
        assert!(a.instructions.starts_with("# Style"), "{}", a.instructions);
        assert_eq!(a.resources, vec![PathBuf::from("references/words.md")]);
    }

    #[test]
    fn scripts_become_tools_and_bad_loop_metadata_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let text = "---\nname: wc\ndescription: Counts words.\nmetadata:\n  tool_choice: required\n  max_steps: \"3\"\n---\n\nCall the tool.\n";
        let file = write(tmp.path(), "wc/SKILL.md", text);
        write(tmp.path(), "wc/scripts/count_words.py", "print(1)");
        write(tmp.path(), "wc/scripts/lib/helper.py", "x = 1");
        let s = skill(&file, text, Origin::Project).unwrap();
        assert_eq!(
            s.tools.tools.len(),
            1,
            "the helper module is no tool: {:?}",
            s.tools
        );
        assert!(s.tools.first_call_required);
        assert_eq!(s.tools.max_steps, 3);
        let bad = text.replace("max_steps: \"3\"", "max_steps: \"many\"");
        let e = skill(&file, &bad, Origin::Project).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("metadata.max_steps"));
        assert_eq!(e.line, Some(6));
        let bad = text.replace("tool_choice: required", "tool_choice: always");
        let e = skill(&file, &bad, Origin::Project).unwrap_err();
        assert!(e.message.contains("`auto` or `required`"), "{e:?}");
    }

    #[test]
    fn the_name_must_match_the_folder_unless_defined_in_a_cell() {
        let e = skill(Path::new("/s/other/SKILL.md"), GOOD, Origin::User).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.contains("does not match its folder `other`"),
            "{}",
            e.message
        );
        assert!(skill(Path::new("<%%skill cell>"), GOOD, Origin::Cell).is_ok());
    }

    #[test]
    fn a_unicode_name_matches_its_folder_in_either_normal_form() {
        let text = "---\nname: cafe\u{301}\ndescription: d\n---\nx\n";
        let h = header(Path::new("/s/caf\u{e9}/SKILL.md"), text, Origin::User).unwrap();
        assert_eq!(h.meta.name, "cafe\u{301}");
        let e = header(Path::new("/s/cafe/SKILL.md"), text, Origin::User).unwrap_err();
        assert!(e.message.contains("does not match"), "{}", e.message);
    }

    #[test]
    fn frontmatter_shape_errors_name_their_line() {
        let e = skill(
            Path::new("/s/a/SKILL.md"),
            "# no frontmatter\n",
            Origin::User,
        )
        .unwrap_err();
        assert!(e.message.contains("does not start with"), "{}", e.message);
        let e = skill(Path::new("/s/a/SKILL.md"), "---\nname: a\n", Origin::User).unwrap_err();
        assert!(e.message.contains("never closed"), "{}", e.message);
        let e = skill(
            Path::new("/s/a/SKILL.md"),
            "---\nname: a\ndescription: d\nversion: 1\n---\nx\n",
            Origin::User,
        )
        .unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(4), Some("version")));
        let e = skill(
            Path::new("/s/a/SKILL.md"),
            "---\nname: a\ndescription: d\n---\n\n",
            Origin::User,
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5));
    }
}
