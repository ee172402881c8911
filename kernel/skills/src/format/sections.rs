//! The sections of a native manifest that configure how a skill runs:
//! `routing`, `resilience` (with sane bounds) and `dependencies` (a
//! mapping of semver ranges, or a list of `{name, version}`).

use std::time::Duration;

use serde_json::Value;

use super::doc::{type_name, Obj};
use super::keys::{DEPENDENCY_KEYS, RESILIENCE_KEYS, ROUTING_KEYS};
use super::limits::{MAX_RETRIES, MAX_TIMEOUT_SECS};
use super::validate;
use crate::error::LoadError;
use crate::model::{Dependency, Resilience, Routing};

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

pub fn routing(root: &Obj<'_>) -> Result<Routing, LoadError> {
    match root.obj("routing")? {
        Some(r) => {
            r.deny_unknown(ROUTING_KEYS, "`routing`")?;
            routing_of(&r, "profile", "model")
        }
        None => Ok(Routing::default()),
    }
}

pub fn resilience(root: &Obj<'_>) -> Result<Resilience, LoadError> {
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
pub fn dependencies(root: &Obj<'_>, own_name: &str) -> Result<Vec<Dependency>, LoadError> {
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
                format!("expected a mapping or a list, found {}", type_name(other)),
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
