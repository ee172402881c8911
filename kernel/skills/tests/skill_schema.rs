//! Keeps `docs/skill.schema.json` honest: its property names, level by
//! level and kind by kind, are exactly the keys the native parser
//! accepts; its bounds are the loader's; and every native manifest among
//! the examples and the valid corpus uses only schema properties.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use skillkernel_skills::format::{keys, limits};
use skillkernel_skills::model::SkillKind;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(root().join("docs/skill.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn names(v: &Value) -> BTreeSet<String> {
    v["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties in {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

#[test]
fn schema_properties_are_the_parser_keys_at_every_level() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let kinds = [
        SkillKind::Prompt,
        SkillKind::Workflow,
        SkillKind::Conversation,
        SkillKind::Command,
        SkillKind::Session,
    ];
    let all: BTreeSet<String> = kinds
        .iter()
        .flat_map(|k| keys::for_kind(*k))
        .map(String::from)
        .collect();
    assert_eq!(names(&s), all, "top level");
    let defs = &s["$defs"];
    for (def, parser) in [
        ("parameter", keys::PARAM_KEYS),
        ("phase", keys::PHASE_KEYS),
        ("routing", keys::ROUTING_KEYS),
        ("generation", keys::GENERATION_KEYS),
        ("dependency", keys::DEPENDENCY_KEYS),
        ("resilience", keys::RESILIENCE_KEYS),
        ("context", keys::CONTEXT_KEYS),
        ("fallback", keys::FALLBACK_KEYS),
    ] {
        assert_eq!(names(&defs[def]), set(parser), "$defs.{def}");
    }
}

#[test]
fn each_kind_allows_exactly_its_own_keys() {
    let s = schema();
    let all = names(&s);
    for rule in s["allOf"].as_array().unwrap() {
        let kind = rule["if"]["properties"]["type"]["const"].as_str().unwrap();
        let forbidden: BTreeSet<String> = rule["then"]["properties"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| **v == Value::Bool(false))
            .map(|(k, _)| k.clone())
            .collect();
        let allowed: BTreeSet<String> = all.difference(&forbidden).cloned().collect();
        let kind: SkillKind = serde_json::from_value(Value::String(kind.into())).unwrap();
        assert_eq!(allowed, set(&keys::for_kind(kind)), "keys of {kind} skills");
    }
}

#[test]
fn schema_bounds_are_the_loader_bounds() {
    let s = schema();
    let defs = &s["$defs"];
    assert_eq!(defs["skill_name"]["maxLength"], limits::MAX_NAME_CHARS);
    assert_eq!(
        s["properties"]["description"]["maxLength"],
        limits::MAX_DESCRIPTION_CHARS
    );
    assert_eq!(
        s["properties"]["compatibility"]["maxLength"],
        limits::MAX_COMPATIBILITY_CHARS
    );
    assert_eq!(
        s["properties"]["max_parallel"]["default"],
        limits::DEFAULT_MAX_PARALLEL
    );
    assert_eq!(
        defs["resilience"]["properties"]["retries"]["maximum"],
        limits::MAX_RETRIES
    );
    assert_eq!(
        defs["resilience"]["properties"]["timeout_secs"]["maximum"],
        limits::MAX_TIMEOUT_SECS
    );
    assert_eq!(
        defs["phase"]["properties"]["temperature"]["maximum"],
        limits::MAX_TEMPERATURE
    );
    assert_eq!(
        defs["phase"]["properties"]["id"]["maxLength"],
        limits::MAX_PHASE_ID_CHARS
    );
}

/// Checks that every key of `value` is a property of `schema`, recursing
/// into the definitions the manifest's nested fields use.
fn only_schema_keys(
    value: &Value,
    schema: &Value,
    defs: &Value,
    at: &str,
    problems: &mut Vec<String>,
) {
    let Some(map) = value.as_object() else { return };
    let allowed = names(schema);
    for (k, v) in map {
        if !allowed.contains(k) {
            problems.push(format!("{at}.{k} is not in the schema"));
            continue;
        }
        let def = match k.as_str() {
            "parameters" => "parameter",
            "phases" => "phase",
            "routing" => "routing",
            "generation" => "generation",
            "resilience" => "resilience",
            "context" => "context",
            "fallback" => "fallback",
            "dependencies" if v.is_array() => "dependency",
            _ => continue,
        };
        let items: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            only_schema_keys(item, &defs[def], defs, &format!("{at}.{k}"), problems);
        }
    }
}

#[test]
fn native_examples_use_only_schema_properties() {
    let s = schema();
    let mut files = Vec::new();
    for dir in ["examples/skills", "kernel/skills/tests/skill-corpus/valid"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            for name in ["skill.yaml", "skill.yml", "skill.json"] {
                let f = entry.as_ref().unwrap().path().join(name);
                if f.exists() {
                    files.push(f);
                }
            }
        }
    }
    assert!(files.len() >= 8, "{files:?}");
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let value: Value = serde_norway::from_str(&text).unwrap();
        only_schema_keys(
            &value,
            &s,
            &s["$defs"],
            &f.display().to_string(),
            &mut problems,
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
