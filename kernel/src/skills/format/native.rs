//! The native manifest, `skill.yaml` / `skill.json`: the superset format.
//!
//! Reads the fields every kind shares (metadata, type, parameters,
//! dependencies, routing, generation, resilience) and hands the body to
//! [`super::bodies`]. Every key is known: an unknown one is an error naming
//! the nearest known key, and a key of another kind (`phases` in a prompt
//! skill) says which `type` it belongs to. The key lists here are what
//! `docs/skill.schema.json` is tested against.

use std::time::Duration;

use serde_json::Value;

use super::bodies;
use super::doc::{Doc, Obj};
use super::limits::{MAX_COMPATIBILITY_CHARS, MAX_RETRIES, MAX_TIMEOUT_SECS, UNVERSIONED};
use super::params;
use super::validate;
use crate::skills::error::LoadError;
use crate::skills::model::{
    Dependency, Origin, Resilience, Routing, Skill, SkillFormat, SkillHeader, SkillKind, SkillMeta,
    Source,
};
use crate::skills::template::nearest;

/// Keys every kind accepts.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "author",
    "license",
    "tags",
    "category",
    "compatibility",
    "metadata",
    "type",
    "parameters",
    "routing",
    "generation",
    "dependencies",
    "resilience",
];
pub const PROMPT_KEYS: &[&str] = &["system", "template"];
pub const WORKFLOW_KEYS: &[&str] = &["phases", "max_parallel", "output"];
pub const CONVERSATION_KEYS: &[&str] = &["system", "context"];
/// Kept raw for the sandbox (`CommandSkill::policy`).
pub const POLICY_KEYS: &[&str] = &[
    "permissions",
    "resource_limits",
    "sandbox",
    "timeout",
    "retries",
];
pub const COMMAND_KEYS: &[&str] = &["command", "args", "env", "fallback"];
pub const SESSION_KEYS: &[&str] = &["command", "args", "env"];
pub const ROUTING_KEYS: &[&str] = &["profile", "model"];
pub const GENERATION_KEYS: &[&str] = &["max_tokens", "temperature"];
pub const RESILIENCE_KEYS: &[&str] = &[
    "retries",
    "backoff_initial_ms",
    "backoff_max_ms",
    "timeout_secs",
    "circuit_threshold",
    "circuit_recovery_secs",
];
pub const DEPENDENCY_KEYS: &[&str] = &["name", "version"];

/// The native `type` names.
const TYPES: &[&str] = &["prompt", "workflow", "conversation", "command", "session"];

/// The keys a kind accepts besides [`COMMON_KEYS`].
pub fn kind_keys(kind: SkillKind) -> Vec<&'static str> {
    match kind {
        SkillKind::Prompt => PROMPT_KEYS.to_vec(),
        SkillKind::Workflow => WORKFLOW_KEYS.to_vec(),
        SkillKind::Conversation => CONVERSATION_KEYS.to_vec(),
        SkillKind::Command => [COMMAND_KEYS, POLICY_KEYS].concat(),
        SkillKind::Session => [SESSION_KEYS, POLICY_KEYS].concat(),
        SkillKind::Agent => Vec::new(),
    }
}

/// The metadata, kind, parameters and dependencies: all a header needs.
struct Head {
    meta: SkillMeta,
    kind: SkillKind,
    parameters: Vec<crate::skills::model::Parameter>,
    dependencies: Vec<Dependency>,
}

fn head(root: &Obj<'_>) -> Result<Head, LoadError> {
    let kind = kind(root)?;
    check_keys(root, kind)?;
    let meta = meta(root)?;
    let parameters = params::parameters(root)?;
    let dependencies = dependencies(root, &meta.name)?;
    Ok(Head {
        meta,
        kind,
        parameters,
        dependencies,
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
    let body = bodies::body(&root, h.kind, &names)?;
    Ok(Skill {
        meta: h.meta,
        parameters: h.parameters,
        dependencies: h.dependencies,
        routing: routing(&root)?,
        generation: match root.obj("generation")? {
            Some(g) => {
                g.deny_unknown(GENERATION_KEYS, "`generation`")?;
                validate::generation(&g)?
            }
            None => Default::default(),
        },
        resilience: resilience(&root)?,
        body,
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
    let compatibility = root.str("compatibility")?.map(str::to_string);
    if let Some(c) = &compatibility {
        let n = c.chars().count();
        if n == 0 || n > MAX_COMPATIBILITY_CHARS {
            return Err(root.error(
                "compatibility",
                format!(
                    "`compatibility` is {n} characters; it must be 1–{MAX_COMPATIBILITY_CHARS}"
                ),
                "state briefly what environment the skill needs",
            ));
        }
    }
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

/// `routing: {profile, model}`; both optional, neither empty.
pub fn routing_of(obj: &Obj<'_>, profile_key: &str, model_key: &str) -> Result<Routing, LoadError> {
    let mut r = Routing::default();
    for (key, slot) in [(profile_key, &mut r.profile), (model_key, &mut r.model)] {
        if let Some(v) = obj.str(key)? {
            if v.trim().is_empty() {
                return Err(obj.error(
                    key,
                    format!("`{key}` is empty"),
                    "remove it, or name a profile (cheap, balanced, premium) or a model",
                ));
            }
            *slot = Some(v.trim().to_string());
        }
    }
    Ok(r)
}

fn routing(root: &Obj<'_>) -> Result<Routing, LoadError> {
    match root.obj("routing")? {
        Some(r) => {
            r.deny_unknown(ROUTING_KEYS, "`routing`")?;
            routing_of(&r, "profile", "model")
        }
        None => Ok(Routing::default()),
    }
}

fn resilience(root: &Obj<'_>) -> Result<Resilience, LoadError> {
    let mut r = Resilience::default();
    let Some(o) = root.obj("resilience")? else {
        return Ok(r);
    };
    o.deny_unknown(RESILIENCE_KEYS, "`resilience`")?;
    let bounded = |key: &str, lo: u64, hi: u64, remedy: &str| -> Result<Option<u64>, LoadError> {
        match o.u64(key)? {
            Some(v) if v < lo || v > hi => {
                Err(o.error(key, format!("`{key}` is {v}; it must be {lo}–{hi}"), remedy))
            }
            v => Ok(v),
        }
    };
    if let Some(v) = bounded(
        "retries",
        0,
        MAX_RETRIES,
        "retry a transient failure a few times at most",
    )? {
        r.retries = v as u32;
    }
    let ms = |v: u64| Duration::from_millis(v);
    let day_ms = MAX_TIMEOUT_SECS * 1000;
    if let Some(v) = bounded(
        "backoff_initial_ms",
        1,
        day_ms,
        "e.g. `backoff_initial_ms: 200`",
    )? {
        r.backoff_initial = ms(v);
    }
    if let Some(v) = bounded("backoff_max_ms", 1, day_ms, "e.g. `backoff_max_ms: 5000`")? {
        r.backoff_max = ms(v);
    }
    if r.backoff_max < r.backoff_initial {
        let key = if o.has("backoff_max_ms") {
            "backoff_max_ms"
        } else {
            "backoff_initial_ms"
        };
        return Err(o.error(
            key,
            format!(
                "`backoff_max_ms` ({}) is below `backoff_initial_ms` ({})",
                r.backoff_max.as_millis(),
                r.backoff_initial.as_millis()
            ),
            "the backoff doubles from the initial value up to the maximum: make the maximum larger",
        ));
    }
    let secs = Duration::from_secs;
    if let Some(v) = bounded(
        "timeout_secs",
        1,
        MAX_TIMEOUT_SECS,
        "e.g. `timeout_secs: 120`",
    )? {
        r.timeout = secs(v);
    }
    if let Some(v) = bounded(
        "circuit_threshold",
        1,
        1000,
        "e.g. `circuit_threshold: 5` failures in a row",
    )? {
        r.circuit_threshold = v as u32;
    }
    if let Some(v) = bounded(
        "circuit_recovery_secs",
        1,
        MAX_TIMEOUT_SECS,
        "e.g. `circuit_recovery_secs: 30`",
    )? {
        r.circuit_recovery = secs(v);
    }
    Ok(r)
}

/// `dependencies`: a mapping `name: range`, or a list of `{name, version}`.
fn dependencies(root: &Obj<'_>, own_name: &str) -> Result<Vec<Dependency>, LoadError> {
    let doc = &root.doc;
    // (name, range, field of the name, field of the range)
    let mut raw: Vec<(String, String, String, String)> = Vec::new();
    match root.get("dependencies") {
        None => {}
        Some(Value::Object(_)) => {
            for (name, range) in root.str_map("dependencies")? {
                let field = format!("dependencies.{name}");
                raw.push((name, range, field.clone(), field));
            }
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let o = Obj::new(*doc, &format!("dependencies[{i}]"), item)?;
                o.deny_unknown(DEPENDENCY_KEYS, "a dependency")?;
                let name = o.req_str("name", "name the skill depended on")?;
                let range = o.str("version")?.unwrap_or("*");
                raw.push((
                    name.to_string(),
                    range.to_string(),
                    o.field("name"),
                    o.field("version"),
                ));
            }
        }
        Some(other) => {
            return Err(root.error(
                "dependencies",
                format!(
                    "expected a mapping or a list, found {}",
                    super::doc::type_name(other)
                ),
                "write `dependencies:` then `other-skill: \"^1.0\"` lines",
            ))
        }
    }
    let mut out: Vec<Dependency> = Vec::new();
    for (name, range, name_field, range_field) in raw {
        validate::check_name(doc, &name_field, &name)?;
        if name == own_name {
            return Err(doc.error(
                &name_field,
                format!("`{name}` depends on itself"),
                "remove the dependency",
            ));
        }
        if out.iter().any(|d| d.name == name) {
            return Err(doc.error(
                &name_field,
                format!("`{name}` is listed twice"),
                "list each dependency once",
            ));
        }
        let version = semver::VersionReq::parse(&range).map_err(|e| {
            doc.error(
                &range_field,
                format!("`{range}` is not a version range ({e})"),
                "write a semver range such as `^1.2`, `>=0.3, <0.5` or `*`",
            )
        })?;
        out.push(Dependency { name, version });
    }
    Ok(out)
}
