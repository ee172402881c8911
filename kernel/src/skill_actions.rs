//! The skill actions as data: what `%skill` shows as tables and
//! `skill_request` returns as JSON, computed once here.
//!
//! Every action but `run` (see [`crate::skill_run`]) is a function from
//! its arguments to a JSON object; the shapes are documented in
//! `docs/protocol.md` ("skill_request / skill_reply").

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::errors::KernelError;
use crate::sandbox::Sandbox;
use crate::session::Shared;
use crate::skills::format;
use crate::skills::model::Origin;
use crate::skills::registry::{Failure, ReloadReport, SkillEntry, State, FOLDER_MANIFESTS};
use crate::skills::service::Skills;
use crate::skills::{LoadError, SkillError};

pub fn skills(shared: &Shared) -> Result<Arc<Skills>, KernelError> {
    shared.skills().ok_or(KernelError::NoSkills)
}

/// One skill version as listings show it.
pub fn entry_json(e: &SkillEntry) -> Value {
    let h = &e.header;
    json!({
        "id": e.id,
        "name": h.meta.name,
        "version": h.meta.version.to_string(),
        "kind": h.kind,
        "description": h.meta.description,
        "author": h.meta.author,
        "tags": h.meta.tags,
        "category": h.meta.category,
        "origin": h.source.origin.as_str(),
        "format": h.source.format,
        "path": h.source.path,
        "state": e.state,
        "disabled": e.disabled,
        "shadowed_by": e.shadowed_by.map(Origin::as_str),
        "error": e.error,
    })
}

pub fn failure_json(f: &Failure) -> Value {
    json!({
        "skill": f.skill,
        "path": f.path,
        "code": f.error.code,
        "message": f.error.message,
        "hint": f.error.hint,
    })
}

pub fn load_error_json(e: &LoadError) -> Value {
    json!({
        "file": e.file,
        "field": e.field,
        "line": e.line,
        "message": e.message,
        "remedy": e.remedy,
    })
}

pub fn report_json(r: &ReloadReport) -> Value {
    json!({
        "added": r.added,
        "updated": r.updated,
        "removed": r.removed,
        "failed": r.failed.iter().map(failure_json).collect::<Vec<_>>(),
        "unchanged": r.unchanged,
        "elapsed_ms": (r.elapsed.as_secs_f64() * 1e4).round() / 10.0,
    })
}

pub fn list(skills: &Skills) -> Value {
    let entries: Vec<Value> = skills.registry.list().iter().map(entry_json).collect();
    let failures: Vec<Value> = skills
        .registry
        .failures()
        .iter()
        .map(failure_json)
        .collect();
    json!({ "skills": entries, "failures": failures })
}

pub fn search(skills: &Skills, query: &str) -> Result<Value, KernelError> {
    let hits = skills.registry.search(query)?;
    let found: Vec<Value> = hits
        .iter()
        .map(|h| {
            let mut v = entry_json(&h.entry);
            v["score"] = json!(h.score);
            v["versions"] = json!(h.versions.iter().map(|v| v.to_string()).collect::<Vec<_>>());
            v
        })
        .collect();
    Ok(json!({ "skills": found }))
}

pub fn info(skills: &Skills, spec: &str) -> Result<Value, KernelError> {
    let info = skills.registry.info(spec)?;
    let name = info.entry.header.meta.name.clone();
    let mut v = entry_json(&info.entry);
    let h = &info.entry.header;
    v["license"] = json!(h.meta.license);
    v["parameters"] = json!(h.parameters);
    v["dependencies"] = json!(h
        .dependencies
        .iter()
        .map(|d| json!({"name": d.name, "version": d.version.to_string()}))
        .collect::<Vec<_>>());
    v["executions"] = json!(info.executions);
    v["history"] = json!(info.history);
    v["shadowed"] = json!(info.shadowed);
    v["dependents"] = json!(info.dependents);
    v["resolved"] = json!(info.resolved);
    v["versions"] = json!(info
        .versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>());
    v["breaker"] = json!(skills.executor.breaker(&name));
    v["metrics"] = json!(skills.metrics().skill(&name));
    v["conversation_turns"] = json!(skills.conversation(&name).len());
    Ok(json!({ "skill": v }))
}

/// Loads `target`: a skill file or folder (registered for this session,
/// as a `%%skill` cell is), else a name whose skill is parsed now.
pub async fn load(skills: &Skills, target: &str) -> Result<Value, KernelError> {
    if let Some(path) = as_path(target) {
        let skill = match load_path(&path, Origin::Cell).await {
            Ok(skill) => skill,
            Err(e) => return Err(SkillError::from(e).into()),
        };
        let id = skills.registry.register_inline(skill);
        let entry = skills.registry.get(&id)?;
        return Ok(json!({ "skill": entry_json(&entry) }));
    }
    let owned = target.to_owned();
    let entry = skills.with_registry(move |r| r.load(&owned)).await?;
    Ok(json!({ "skill": entry_json(&entry) }))
}

pub async fn reload(skills: &Skills, name: Option<&str>) -> Result<Value, KernelError> {
    let report = skills.reload(name.map(str::to_owned)).await?;
    Ok(json!({ "report": report_json(&report) }))
}

/// `unload`, `enable` or `disable` of the versions `spec` names.
/// Unloads, enables or disables a skill; unloading or disabling one ends
/// its session process, if it has one.
pub async fn switch(
    skills: &Skills,
    sandbox: Option<&Sandbox>,
    action: &str,
    spec: &str,
) -> Result<Value, KernelError> {
    let owned = spec.to_owned();
    let ids = match action {
        "unload" => skills.with_registry(move |r| r.unload(&owned)).await?,
        "enable" => skills.with_registry(move |r| r.enable(&owned)).await?,
        _ => {
            skills
                .with_registry(move |r| r.disable(&owned, "disabled by the user"))
                .await?
        }
    };
    if let (Some(sandbox), "unload" | "disable") = (sandbox, action) {
        for id in &ids {
            let name = id.split('@').next().unwrap_or(id);
            if sandbox.sessions.end(name).await {
                tracing::info!(skill = %id, "ended the skill's session at {action}");
            }
        }
    }
    Ok(json!({ "skills": ids }))
}

/// Checks a file or folder without registering it, or a known skill by
/// loading it. A path is checked as a skill directory's entry would be (an
/// Agent Skill's name must match its folder).
pub async fn validate(skills: &Skills, target: &str) -> Result<Value, KernelError> {
    if let Some(path) = as_path(target) {
        return Ok(match load_path(&path, Origin::Configured).await {
            Ok(skill) => json!({
                "valid": true,
                "skills": [{
                    "id": skill.id(),
                    "name": skill.meta.name,
                    "version": skill.meta.version.to_string(),
                    "kind": skill.kind(),
                    "description": skill.meta.description,
                    "path": skill.source.path,
                }],
                "errors": [],
            }),
            Err(e) => json!({ "valid": false, "skills": [], "errors": [load_error_json(&e)] }),
        });
    }
    let owned = target.to_owned();
    Ok(match skills.with_registry(move |r| r.load(&owned)).await {
        Ok(entry) => json!({ "valid": true, "skills": [entry_json(&entry)], "errors": [] }),
        Err(e) if e.code == crate::skills::ErrorCode::SkillNotFound => return Err(e.into()),
        Err(e) => json!({
            "valid": false,
            "skills": [],
            "errors": [{"file": null, "field": null, "line": null, "message": e.message, "remedy": e.hint}],
        }),
    })
}

/// Fully loads every skill that is not shadowed or disabled — what
/// discovery leaves to first use — and reports each one that fails; those
/// that were unloaded are unloaded again, so nothing stays in memory.
pub async fn validate_all(skills: &Skills) -> Result<Value, KernelError> {
    skills
        .with_registry(|r| {
            let mut valid = Vec::new();
            let mut errors = Vec::new();
            for entry in r.list() {
                if entry.shadowed_by.is_some() || entry.disabled.is_some() {
                    continue;
                }
                let was_unloaded = entry.state == State::Unloaded;
                match r.load(&entry.id) {
                    Ok(_) => {
                        if was_unloaded {
                            let _ = r.unload(&entry.id);
                        }
                        valid.push(entry.id.clone());
                    }
                    Err(e) => errors.push(json!({
                        "skill": entry.id,
                        "file": entry.header.source.path,
                        "field": null,
                        "line": null,
                        "message": e.message,
                        "remedy": e.hint,
                    })),
                }
            }
            Ok(json!({ "valid": errors.is_empty(), "skills": valid, "errors": errors }))
        })
        .await
        .map_err(KernelError::from)
}

pub fn metrics(
    skills: &Skills,
    name: Option<&str>,
    prometheus: bool,
) -> Result<Value, KernelError> {
    if prometheus {
        return Ok(json!({ "prometheus": skills.metrics().render_prometheus() }));
    }
    Ok(match name {
        Some(n) => {
            let entry = skills.registry.get(n)?;
            let name = entry.header.meta.name;
            json!({ "metrics": { "skills": { name.clone(): skills.metrics().skill(&name) } } })
        }
        None => json!({ "metrics": skills.metrics().snapshot() }),
    })
}

/// Closes the skill's circuit breaker, zeroes its metrics and forgets its
/// conversation.
pub fn reset(skills: &Skills, spec: &str) -> Result<Value, KernelError> {
    let entry = skills.registry.get(spec)?;
    let name = entry.header.meta.name;
    skills.executor.reset(&name);
    skills.metrics().reset(&name);
    let forgot = skills.clear_conversation(&name);
    Ok(json!({
        "skill": name,
        "breaker": skills.executor.breaker(&name),
        "conversation_cleared": forgot,
    }))
}

/// `target` as a path when it names a file or folder (or looks like one).
fn as_path(target: &str) -> Option<PathBuf> {
    let looks = target.contains('/') || target.ends_with(".yaml") || target.ends_with(".md");
    let path = PathBuf::from(target);
    (looks || path.exists()).then_some(path)
}

/// Loads a skill file, or the manifest inside a skill folder, as found in
/// `origin`.
async fn load_path(path: &Path, origin: Origin) -> Result<crate::skills::Skill, LoadError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = if path.is_dir() {
            FOLDER_MANIFESTS
                .iter()
                .map(|m| path.join(m))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    LoadError::new(
                        &path,
                        "no skill manifest in this folder",
                        "a skill folder holds skill.yaml, skill.yml, skill.json or SKILL.md",
                    )
                })?
        } else {
            path.clone()
        };
        format::load_file(&file, origin)
    })
    .await
    .unwrap_or_else(|e| {
        Err(LoadError::new(
            Path::new("<load>"),
            format!("loading failed: {e}"),
            "",
        ))
    })
}
