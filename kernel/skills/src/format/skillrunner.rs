//! Skillrunner workflow YAML (the Go tool's skills), mapped onto a
//! workflow [`Skill`].
//!
//! | Skillrunner | here |
//! | --- | --- |
//! | `id` (required) | `meta.name` (the name rule applies) |
//! | `name` (required, display name) | `meta.metadata["title"]` |
//! | `version` | `meta.version`, else [`UNVERSIONED`] |
//! | `description` | `meta.description`, else the display name |
//! | `metadata.author` / `category` / `license` / `tags` | the same `meta` fields |
//! | other `metadata` entries | `meta.metadata` (lists and maps as JSON text) |
//! | `routing.default_profile` | the skill's routing profile (default `balanced`, as in Skillrunner) |
//! | `routing.generation_model` / `review_model` / `fallback_model` / `max_context_tokens` | `meta.metadata["skillrunner.…"]`: they name Skillrunner's providers' models, so they are kept, not routed |
//! | `phases[].id` / `name` / `depends_on` | the same `Phase` fields |
//! | `phases[].prompt_template` | `Phase::template`, translated by [`super::gotemplate`] |
//! | `phases[].routing_profile` | the phase's routing profile |
//! | `phases[].max_tokens` / `temperature` | the phase's generation settings; when unset the kernel's defaults apply, not Skillrunner's 4096 / 0.7 (sized for cloud models) |
//!
//! Skillrunner's three profiles are ours by name (`cheap`, `balanced`,
//! `premium`); other values are refused, as Skillrunner does. Unknown keys
//! are refused too (Skillrunner ignores them): a misspelt `depends_on`
//! would otherwise silently drop a dependency.

use serde_json::Value;

use super::bodies;
use super::dag;
use super::doc::{Doc, Obj};
use super::gotemplate;
use super::limits::{DEFAULT_MAX_PARALLEL, UNVERSIONED};
use super::validate;
use crate::error::LoadError;
use crate::model::{
    Origin, Phase, Routing, Skill, SkillBody, SkillFormat, SkillHeader, SkillKind, SkillMeta,
    Source, WorkflowSkill,
};
use crate::template::{nearest, Contract};

pub const TOP_KEYS: &[&str] = &[
    "id",
    "name",
    "version",
    "description",
    "phases",
    "routing",
    "metadata",
];
pub const ROUTING_KEYS: &[&str] = &[
    "default_profile",
    "generation_model",
    "review_model",
    "fallback_model",
    "max_context_tokens",
];
pub const PHASE_KEYS: &[&str] = &[
    "id",
    "name",
    "prompt_template",
    "routing_profile",
    "depends_on",
    "max_tokens",
    "temperature",
];
const PROFILES: &[&str] = &["cheap", "balanced", "premium"];

/// A top-level `phases:` line, the mark of a Skillrunner file.
pub fn is_phases_line(line: &str) -> bool {
    ["phases:", "\"phases\":", "'phases':"]
        .iter()
        .any(|p| line.starts_with(p))
}

fn source(doc: &Doc<'_>, origin: Origin) -> Source {
    Source {
        format: SkillFormat::Skillrunner,
        path: (origin != Origin::Cell).then(|| doc.file.to_path_buf()),
        origin,
    }
}

pub fn header(
    file: &std::path::Path,
    text: &str,
    origin: Origin,
) -> Result<SkillHeader, LoadError> {
    let doc = Doc::new(file, text, false);
    let value = doc.parse()?;
    let root = Obj::new(doc, "", &value)?;
    Ok(SkillHeader {
        meta: meta(&root)?.0,
        kind: SkillKind::Workflow,
        parameters: Vec::new(),
        dependencies: Vec::new(),
        source: source(&doc, origin),
    })
}

pub fn skill(file: &std::path::Path, text: &str, origin: Origin) -> Result<Skill, LoadError> {
    let doc = Doc::new(file, text, false);
    let value = doc.parse()?;
    let root = Obj::new(doc, "", &value)?;
    let (meta, routing) = meta(&root)?;
    Ok(Skill {
        meta,
        parameters: Vec::new(),
        dependencies: Vec::new(),
        routing,
        generation: Default::default(),
        resilience: Default::default(),
        body: SkillBody::Workflow(workflow(&root)?),
        output: None,
        tools: Default::default(),
        source: source(&doc, origin),
    })
}

fn profile(o: &Obj<'_>, key: &str) -> Result<Option<String>, LoadError> {
    let Some(p) = o.str(key)? else {
        return Ok(None);
    };
    if PROFILES.contains(&p) {
        return Ok(Some(p.to_string()));
    }
    let remedy = match nearest(p, PROFILES.iter().copied()) {
        Some(n) => format!("did you mean `{n}`?"),
        None => "use cheap, balanced or premium".into(),
    };
    Err(o.error(key, format!("unknown routing profile `{p}`"), remedy))
}

/// The metadata and the skill-level routing.
fn meta(root: &Obj<'_>) -> Result<(SkillMeta, Routing), LoadError> {
    let doc = &root.doc;
    root.deny_unknown(TOP_KEYS, "a Skillrunner skill")?;
    let id = root.req_str("id", "add `id: my-skill`, the skill's identifier")?;
    validate::check_name(doc, "id", id)?;
    let title = root.req_str("name", "add `name:`, the skill's display name")?;
    let version = match root.str("version")? {
        Some(v) => validate::parse_version(doc, "version", v)?,
        None => UNVERSIONED,
    };
    let description = root
        .str("description")?
        .unwrap_or(title)
        .trim_end()
        .to_string();
    let field = if root.has("description") {
        "description"
    } else {
        "name"
    };
    validate::check_description(doc, field, &description)?;
    let mut meta = SkillMeta::new(id.to_string(), version, description);
    meta.metadata = [("title".to_string(), title.to_string())].into();
    if let Some(m) = root.obj("metadata")? {
        meta.author = m.str("author")?.map(str::to_string);
        meta.category = m.str("category")?.map(str::to_string);
        meta.license = m.str("license")?.map(str::to_string);
        meta.tags = m.str_list("tags")?;
        for (k, v) in m
            .map
            .iter()
            .filter(|(k, _)| !["author", "category", "license", "tags"].contains(&k.as_str()))
        {
            meta.metadata.insert(k.clone(), text_of(v));
        }
    }
    let mut routing = Routing {
        profile: Some("balanced".into()),
        model: None,
    };
    if let Some(r) = root.obj("routing")? {
        r.deny_unknown(ROUTING_KEYS, "Skillrunner `routing`")?;
        if let Some(p) = profile(&r, "default_profile")? {
            routing.profile = Some(p);
        }
        if r.u64("max_context_tokens")? == Some(0) {
            return Err(r.error(
                "max_context_tokens",
                "`max_context_tokens` is 0",
                "give a positive number, e.g. 4096",
            ));
        }
        for key in &ROUTING_KEYS[1..] {
            if let Some(v) = r.get(key) {
                meta.metadata
                    .insert(format!("skillrunner.{key}"), text_of(v));
            }
        }
    }
    Ok((meta, routing))
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn workflow(root: &Obj<'_>) -> Result<WorkflowSkill, LoadError> {
    let (objs, nodes) = bodies::phase_list(
        root,
        PHASE_KEYS,
        "a Skillrunner phase",
        "add `phases:`, a list of `- id: …` / `prompt_template: …` steps",
    )?;
    let graph = dag::check(
        &root.doc,
        &nodes,
        dag::Output {
            named: None,
            allowed: false,
        },
    )?;
    let mut phases = Vec::new();
    for ((o, node), ancestors) in objs.iter().zip(nodes).zip(graph.ancestors) {
        phases.push(phase(o, node, ancestors)?);
    }
    Ok(WorkflowSkill {
        phases,
        max_parallel: DEFAULT_MAX_PARALLEL,
        output: graph.output,
    })
}

fn phase(o: &Obj<'_>, node: dag::Node, ancestors: Vec<String>) -> Result<Phase, LoadError> {
    let name = o.req_str("name", "add `name:`, the phase's display name")?;
    let field = o.field("prompt_template");
    let source = o.req_str(
        "prompt_template",
        "add `prompt_template:` with the phase's prompt (`{{.input}}` is the skill's input)",
    )?;
    let translated = gotemplate::translate(source).map_err(|e| {
        LoadError::new(o.doc.file, e.message, e.remedy)
            .field(field.clone())
            .line(validate::template_line(&o.doc, &field, Some(e.line)))
    })?;
    let contract = Contract {
        params: Vec::new(),
        phases: ancestors,
        in_workflow: true,
    };
    let template = validate::template(&o.doc, &field, &translated, &contract)?;
    Ok(Phase {
        id: node.id,
        name: name.to_string(),
        system: None,
        template,
        depends_on: node.depends_on,
        routing: Routing {
            profile: profile(o, "routing_profile")?,
            model: None,
        },
        generation: validate::generation(o)?,
        output: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const REVIEW: &str = "\
id: code-review
name: Code Review
version: \"1.0.0\"
routing:
  default_profile: cheap
  fallback_model: \"llama3.2:3b\"
phases:
  - id: analyze
    name: Analysis
    prompt_template: \"Analyze: {{.input}}\"
    max_tokens: 64
  - id: security-check
    name: Security
    prompt_template: |
      Based on {{.phases.analyze.output}}
      check {{.input}}
    depends_on: [analyze]
    routing_profile: premium
    temperature: 0.2
  - id: report
    name: Report
    prompt_template: \"{{.phases.analyze}} {{.phases.security-check}}\"
    depends_on: [analyze, security-check]
metadata:
  author: jb
  tags: [review]
  estimated_tokens: 1500
";

    #[test]
    fn maps_ids_profiles_templates_and_metadata() {
        let s = skill(Path::new("/s/code-review.yaml"), REVIEW, Origin::User).unwrap();
        assert_eq!(s.id(), "code-review@1.0.0");
        assert_eq!(s.routing.profile.as_deref(), Some("cheap"));
        assert_eq!(s.meta.metadata["title"], "Code Review");
        assert_eq!(s.meta.metadata["skillrunner.fallback_model"], "llama3.2:3b");
        assert_eq!(s.meta.metadata["estimated_tokens"], "1500");
        assert_eq!(s.meta.tags, vec!["review"]);
        let SkillBody::Workflow(w) = &s.body else {
            panic!("a workflow")
        };
        assert_eq!(w.output, "report");
        assert_eq!(w.phases[1].routing.profile.as_deref(), Some("premium"));
        assert_eq!(w.phases[0].generation.max_tokens, Some(64));
        assert_eq!(
            w.phases[2].template.source(),
            "{{ phases.analyze }} {{ phases[\"security-check\"] }}"
        );
    }

    #[test]
    fn a_phase_reading_a_non_ancestor_is_refused_at_its_line() {
        let text = REVIEW.replace(
            "Based on {{.phases.analyze.output}}",
            "Based on {{.phases.report}}",
        );
        let e = skill(Path::new("/s/code-review.yaml"), &text, Origin::User).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("phases[1].prompt_template"));
        assert_eq!(e.line, Some(15));
        assert!(e.message.contains("phases.report"), "{}", e.message);
    }

    #[test]
    fn go_template_logic_and_bad_profiles_are_refused() {
        let text = REVIEW.replace("check {{.input}}", "{{range .files}}x{{end}}");
        let e = skill(Path::new("/s/c.yaml"), &text, Origin::User).unwrap_err();
        assert_eq!(e.line, Some(16));
        let text = REVIEW.replace("routing_profile: premium", "routing_profile: premum");
        let e = skill(Path::new("/s/c.yaml"), &text, Origin::User).unwrap_err();
        assert_eq!(e.remedy, "did you mean `premium`?");
    }
}
