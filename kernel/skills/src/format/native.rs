//! The native manifest, `skill.yaml` / `skill.json`: the superset format.
//!
//! Reads the fields every kind shares (metadata, type, parameters,
//! dependencies, routing, generation, resilience) and hands the body to
//! [`super::bodies`]. Every key is known: an unknown one is an error naming
//! the nearest known key, and a key of another kind (`phases` in a prompt
//! skill) says which `type` it belongs to. The key lists here are what
//! `docs/skill.schema.json` is tested against.

use serde_json::Value;

use super::bodies;
use super::doc::{Doc, Obj};
use super::keys::{kind_keys, COMMON_KEYS, GENERATION_KEYS};
use super::limits::UNVERSIONED;
use super::params;
use super::sections::{dependencies, resilience, routing};
use super::validate;
use crate::error::LoadError;
use crate::model::{
    Dependency, GenerationOverrides, Origin, Resilience, Routing, Skill, SkillBody, SkillFormat,
    SkillHeader, SkillKind, SkillMeta, Source,
};
use crate::template::nearest;

/// The native `type` names.
const TYPES: &[&str] = &["prompt", "workflow", "conversation", "command", "session"];

/// Everything but the body: what a header needs, plus the cheap sections
/// (so that a header that loads fails a full load only on its body).
struct Head {
    meta: SkillMeta,
    kind: SkillKind,
    parameters: Vec<crate::model::Parameter>,
    dependencies: Vec<Dependency>,
    routing: Routing,
    generation: GenerationOverrides,
    resilience: Resilience,
}

fn head(root: &Obj<'_>) -> Result<Head, LoadError> {
    let kind = kind(root)?;
    check_keys(root, kind)?;
    let meta = meta(root)?;
    let parameters = params::parameters(root)?;
    let dependencies = dependencies(root, &meta.name)?;
    let generation = match root.obj("generation")? {
        Some(g) => {
            g.deny_unknown(GENERATION_KEYS, "`generation`")?;
            validate::generation(&g)?
        }
        None => Default::default(),
    };
    Ok(Head {
        meta,
        kind,
        parameters,
        dependencies,
        routing: routing(root)?,
        generation,
        resilience: resilience(root)?,
    })
}

fn source(doc: &Doc<'_>, origin: Origin) -> Source {
    Source {
        format: SkillFormat::Native,
        path: (origin != Origin::Cell).then(|| doc.file.to_path_buf()),
        origin,
    }
}

/// A native manifest's header, without compiling any template.
pub fn header(doc: Doc<'_>, value: &Value, origin: Origin) -> Result<SkillHeader, LoadError> {
    let root = Obj::new(doc, "", value)?;
    let h = head(&root)?;
    Ok(SkillHeader {
        meta: h.meta,
        kind: h.kind,
        parameters: h.parameters.iter().map(|p| p.summary()).collect(),
        dependencies: h.dependencies,
        source: source(&doc, origin),
    })
}

/// A native manifest, fully loaded and checked.
pub fn skill(doc: Doc<'_>, value: &Value, origin: Origin) -> Result<Skill, LoadError> {
    let root = Obj::new(doc, "", value)?;
    let h = head(&root)?;
    let names: Vec<String> = h.parameters.iter().map(|p| p.name.clone()).collect();
    let mut body = bodies::body(&root, h.kind, &names)?;
    let output = root.output_schema("output_schema")?;
    if let (SkillBody::Workflow(w), Some(schema)) = (&mut body, &output) {
        // The skill's schema is its output phase's unless that phase has one.
        let out = w.output.clone();
        if let Some(phase) = w.phases.iter_mut().find(|p| p.id == out) {
            phase.output.get_or_insert_with(|| schema.clone());
        }
    }
    Ok(Skill {
        meta: h.meta,
        parameters: h.parameters,
        dependencies: h.dependencies,
        routing: h.routing,
        generation: h.generation,
        resilience: h.resilience,
        body,
        output,
        tools: super::tools::native(&root)?,
        source: source(&doc, origin),
    })
}

fn kind(root: &Obj<'_>) -> Result<SkillKind, LoadError> {
    let Some(t) = root.str("type")? else {
        return Ok(SkillKind::Prompt);
    };
    Ok(match t {
        "prompt" => SkillKind::Prompt,
        "workflow" => SkillKind::Workflow,
        "conversation" => SkillKind::Conversation,
        "command" => SkillKind::Command,
        "session" => SkillKind::Session,
        "agent" => {
            return Err(root.error(
                "type",
                "`agent` skills are not written as a native manifest",
                "write an Agent Skills `SKILL.md` (frontmatter + instructions) instead",
            ))
        }
        other => {
            let remedy = match nearest(other, TYPES.iter().copied()) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("use one of {}", TYPES.join(", ")),
            };
            return Err(root.error("type", format!("unknown skill type `{other}`"), remedy));
        }
    })
}

/// Every key must be a common key or one of this kind's.
fn check_keys(root: &Obj<'_>, kind: SkillKind) -> Result<(), LoadError> {
    let own = [COMMON_KEYS, &kind_keys(kind)].concat();
    for key in root.map.keys() {
        if own.contains(&key.as_str()) {
            continue;
        }
        let owner = TYPES
            .iter()
            .zip([
                SkillKind::Prompt,
                SkillKind::Workflow,
                SkillKind::Conversation,
                SkillKind::Command,
                SkillKind::Session,
            ])
            .find(|(_, k)| kind_keys(*k).contains(&key.as_str()));
        if let Some((t, _)) = owner {
            return Err(root.error(
                key,
                format!("`{key}` belongs to `{t}` skills, and this is a `{kind}` skill"),
                format!("set `type: {t}`, or remove `{key}`"),
            ));
        }
        root.deny_unknown(&own, "a skill manifest")?;
    }
    Ok(())
}

fn meta(root: &Obj<'_>) -> Result<SkillMeta, LoadError> {
    let doc = &root.doc;
    let name = root.req_str(
        "name",
        "add `name: my-skill` (lowercase letters, digits, hyphens)",
    )?;
    validate::check_name(doc, "name", name)?;
    let version = match root.str("version")? {
        Some(v) => validate::parse_version(doc, "version", v)?,
        None => UNVERSIONED,
    };
    let description = root.req_str(
        "description",
        "add `description:` saying what the skill does and when to use it",
    )?;
    validate::check_description(doc, "description", description)?;
    let tags = root.str_list("tags")?;
    if let Some(i) = tags.iter().position(|t| t.trim().is_empty()) {
        return Err(doc.error(
            &format!("tags[{i}]"),
            "a tag is empty",
            "remove it or give it a word",
        ));
    }
    let compatibility = validate::compatibility(root)?;
    Ok(SkillMeta {
        name: name.to_string(),
        version,
        description: description.to_string(),
        author: root.str("author")?.map(str::to_string),
        license: root.str("license")?.map(str::to_string),
        tags,
        category: root.str("category")?.map(str::to_string),
        compatibility,
        allowed_tools: Vec::new(),
        metadata: root.str_map("metadata")?.into_iter().collect(),
    })
}
