//! The skill actions as data: what `%skill` shows as tables and
//! `skill_request` returns, computed once here.
//!
//! Every action but `run` (see [`crate::skill_run`]) is a function from
//! its arguments to the answer a `skill_reply` carries
//! ([`skillkernel_protocol::content::SkillReply`]); this is where the
//! engine's own types become the wire's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use skillkernel_protocol::content::{
    self as wire, MetricsReport, SkillDependency, SkillDetails, SkillErrorInfo, SkillFailure,
    SkillHit, SkillListing, SkillParameter, SkillReset, SkillSummary, TrustReport, Validation,
    ValidationError,
};

use crate::errors::KernelError;
use crate::session::Shared;
use skillkernel_sandbox::Sandbox;
use skillkernel_skills::format;
use skillkernel_skills::model::Origin;
use skillkernel_skills::registry::{Failure, ReloadReport, SkillEntry, State};
use skillkernel_skills::service::Skills;
use skillkernel_skills::trust::{TrustMark, TrustPolicy, TrustStatus};
use skillkernel_skills::{LoadError, Skill, SkillError};

pub fn skills(shared: &Shared) -> Result<Arc<Skills>, KernelError> {
    shared.skills().ok_or(KernelError::NoSkills)
}

/// The engine's report `v` as JSON, for the parts of a reply the engine
/// shapes (breaker, metrics, lifecycle history).
fn to_json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise a skill report");
        Value::Null
    })
}

/// The name serde gives a unit enum value (`agent_skills`).
fn serde_name(v: &impl Serialize) -> String {
    match to_json(v) {
        Value::String(name) => name,
        _ => String::new(),
    }
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

fn error_info(e: &SkillError) -> SkillErrorInfo {
    SkillErrorInfo {
        code: e.code.as_str().to_owned(),
        message: e.message.clone(),
        hint: e.hint.clone(),
        skill: e.skill.clone(),
    }
}

/// One skill version as listings show it.
pub fn summary(e: &SkillEntry) -> SkillSummary {
    let h = &e.header;
    SkillSummary {
        id: e.id.clone(),
        name: h.meta.name.clone(),
        version: h.meta.version.to_string(),
        kind: h.kind.as_str().to_owned(),
        description: h.meta.description.clone(),
        author: h.meta.author.clone(),
        tags: h.meta.tags.clone(),
        category: h.meta.category.clone(),
        origin: h.source.origin.as_str().to_owned(),
        format: serde_name(&h.source.format),
        path: h.source.path.as_deref().map(path_text),
        state: e.state.to_string(),
        disabled: e.disabled.clone(),
        shadowed_by: e.shadowed_by.map(|o| o.as_str().to_owned()),
        error: e.error.as_ref().map(error_info),
        trust: None,
    }
}

pub fn failure(f: &Failure) -> SkillFailure {
    SkillFailure {
        skill: f.skill.clone(),
        path: f.path.as_deref().map(path_text),
        code: f.error.code.as_str().to_owned(),
        message: f.error.message.clone(),
        hint: f.error.hint.clone(),
    }
}

pub fn load_error(e: &LoadError) -> ValidationError {
    ValidationError {
        skill: None,
        file: Some(path_text(&e.file)),
        field: e.field.clone(),
        line: e.line,
        message: e.message.clone(),
        remedy: e.remedy.clone(),
    }
}

pub fn report(r: &ReloadReport) -> wire::ReloadReport {
    wire::ReloadReport {
        added: r.added.clone(),
        updated: r.updated.clone(),
        removed: r.removed.clone(),
        failed: r.failed.iter().map(failure).collect(),
        unchanged: r.unchanged,
        elapsed_ms: (r.elapsed.as_secs_f64() * 1e4).round() / 10.0,
    }
}

/// Every skill, each marked with where it stands with workspace trust
/// (which parses and digests what is not known yet: on the blocking pool).
pub async fn list(skills: &Skills) -> SkillListing {
    let marked = skills
        .with_registry(|r| {
            Ok(r.list()
                .iter()
                .map(|e| {
                    let mut s = summary(e);
                    s.trust = r.trust_of(e).map(|t| serde_name(&t.mark));
                    s
                })
                .collect::<Vec<_>>())
        })
        .await;
    SkillListing {
        skills: marked.unwrap_or_else(|_| skills.registry.list().iter().map(summary).collect()),
        failures: skills.registry.failures().iter().map(failure).collect(),
    }
}

/// Where `spec`'s skill stands with workspace trust; with `confirm`,
/// trusted at its digest now (which must be `reviewed` when given).
pub async fn trust(
    skills: &Skills,
    spec: &str,
    reviewed: Option<String>,
    confirm: bool,
    via: &'static str,
) -> Result<TrustReport, KernelError> {
    let owned = spec.to_owned();
    let report = skills
        .with_registry(move |r| {
            let skill = r.loaded(&owned)?;
            let status = if confirm {
                r.trust().grant(&skill, reviewed.as_deref(), via)?
            } else {
                r.trust().status(&skill)
            };
            let recorded = confirm && status.mark == TrustMark::Trusted;
            Ok(trust_report(&skill, &status, recorded, r.trust().policy()))
        })
        .await?;
    Ok(report)
}

/// Withdraws trust in `spec`'s skill.
pub async fn untrust(skills: &Skills, spec: &str) -> Result<TrustReport, KernelError> {
    let owned = spec.to_owned();
    let report = skills
        .with_registry(move |r| {
            let skill = r.loaded(&owned)?;
            let before = r.trust().status(&skill);
            let removed = r.trust().withdraw(&skill)?;
            let mut status = r.trust().status(&skill);
            // What was withdrawn, for the report.
            status.record = before.record;
            Ok(trust_report(&skill, &status, removed, r.trust().policy()))
        })
        .await?;
    Ok(report)
}

fn trust_report(
    skill: &Skill,
    status: &TrustStatus,
    recorded: bool,
    policy: TrustPolicy,
) -> TrustReport {
    TrustReport {
        skill: skill.id(),
        path: skill.source.path.as_deref().map(path_text),
        mark: serde_name(&status.mark),
        asks: status.asks.iter().map(|a| a.to_string()).collect(),
        digest: status.digest.clone(),
        trusted_at: status.record.as_ref().map(|r| r.trusted_at.clone()),
        via: status.record.as_ref().map(|r| r.via.clone()),
        recorded,
        problem: status.problem.clone(),
        policy: policy.as_str().to_owned(),
    }
}

pub fn search(skills: &Skills, query: &str) -> Result<Vec<SkillHit>, KernelError> {
    let hits = skills.registry.search(query)?;
    Ok(hits
        .iter()
        .map(|h| SkillHit {
            skill: summary(&h.entry),
            score: h.score,
            versions: h.versions.iter().map(|v| v.to_string()).collect(),
        })
        .collect())
}

pub fn info(skills: &Skills, spec: &str) -> Result<SkillDetails, KernelError> {
    let info = skills.registry.info(spec)?;
    let name = info.entry.header.meta.name.clone();
    let h = &info.entry.header;
    Ok(SkillDetails {
        skill: summary(&info.entry),
        license: h.meta.license.clone(),
        parameters: h
            .parameters
            .iter()
            .map(|p| SkillParameter {
                name: p.name.clone(),
                type_name: p.type_name.clone(),
                required: p.required,
                description: p.description.clone(),
                values: p.values.clone(),
                default: p.default.clone(),
            })
            .collect(),
        dependencies: h
            .dependencies
            .iter()
            .map(|d| SkillDependency {
                name: d.name.clone(),
                version: d.version.to_string(),
            })
            .collect(),
        executions: info.executions,
        history: to_json(&info.history),
        shadowed: to_json(&info.shadowed),
        dependents: info.dependents.clone(),
        resolved: info.resolved.clone(),
        versions: info.versions.iter().map(|v| v.to_string()).collect(),
        breaker: to_json(&skills.executor.breaker(&name)),
        metrics: to_json(&skills.metrics().skill(&name)),
        conversation_turns: skills.conversation(&name).len(),
    })
}

/// Loads `target`: a skill file or folder (registered for this session,
/// as a `%%skill` cell is), else a name whose skill is parsed now.
pub async fn load(skills: &Skills, target: &str) -> Result<SkillSummary, KernelError> {
    if let Some(path) = as_path(target) {
        let skill = match load_path(&path, Origin::Cell).await {
            Ok(skill) => skill,
            Err(e) => return Err(SkillError::from(e).into()),
        };
        let id = skills.registry.register_inline(skill);
        let entry = skills.registry.get(&id)?;
        return Ok(summary(&entry));
    }
    let owned = target.to_owned();
    let entry = skills.with_registry(move |r| r.load(&owned)).await?;
    Ok(summary(&entry))
}

pub async fn reload(
    skills: &Skills,
    name: Option<&str>,
) -> Result<wire::ReloadReport, KernelError> {
    let r = skills.reload(name.map(str::to_owned)).await?;
    Ok(report(&r))
}

/// What [`switch`] does to a skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Unload,
    Enable,
    Disable,
}

/// Unloads, enables or disables the versions `spec` names; unloading or
/// disabling one ends its session process, if it has one. Returns the ids
/// changed.
pub async fn switch(
    skills: &Skills,
    sandbox: Option<&Sandbox>,
    action: Switch,
    spec: &str,
) -> Result<Vec<String>, KernelError> {
    let owned = spec.to_owned();
    let ids = match action {
        Switch::Unload => skills.with_registry(move |r| r.unload(&owned)).await?,
        Switch::Enable => skills.with_registry(move |r| r.enable(&owned)).await?,
        Switch::Disable => {
            skills
                .with_registry(move |r| r.disable(&owned, "disabled by the user"))
                .await?
        }
    };
    if let (Some(sandbox), Switch::Unload | Switch::Disable) = (sandbox, action) {
        for id in &ids {
            let name = id.split('@').next().unwrap_or(id);
            if sandbox.sessions.end(name).await {
                tracing::info!(skill = %id, ?action, "ended the skill's session");
            }
        }
    }
    Ok(ids)
}

/// Checks a file or folder without registering it, or a known skill by
/// loading it.
pub async fn validate(skills: &Skills, target: &str) -> Result<Validation, KernelError> {
    if let Some(path) = as_path(target) {
        return Ok(match load_path(&path, Origin::Configured).await {
            Ok(skill) => Validation {
                valid: true,
                skills: vec![json!({
                    "id": skill.id(),
                    "name": skill.meta.name,
                    "version": skill.meta.version.to_string(),
                    "kind": skill.kind().as_str(),
                    "description": skill.meta.description,
                    "path": skill.source.path.as_deref().map(path_text),
                })],
                errors: Vec::new(),
            },
            Err(e) => Validation {
                valid: false,
                skills: Vec::new(),
                errors: vec![load_error(&e)],
            },
        });
    }
    let owned = target.to_owned();
    Ok(match skills.with_registry(move |r| r.load(&owned)).await {
        Ok(entry) => Validation {
            valid: true,
            skills: vec![to_json(&summary(&entry))],
            errors: Vec::new(),
        },
        Err(e) if e.code == skillkernel_skills::ErrorCode::SkillNotFound => return Err(e.into()),
        Err(e) => Validation {
            valid: false,
            skills: Vec::new(),
            errors: vec![ValidationError {
                skill: None,
                file: None,
                field: None,
                line: None,
                message: e.message,
                remedy: e.hint,
            }],
        },
    })
}

/// Fully loads every skill that is not shadowed or disabled — what
/// discovery leaves to first use — and reports each one that fails; those
/// that were unloaded are unloaded again, so nothing stays in memory.
pub async fn validate_all(skills: &Skills) -> Result<Validation, KernelError> {
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
                        valid.push(Value::String(entry.id.clone()));
                    }
                    Err(e) => errors.push(ValidationError {
                        skill: Some(entry.id.clone()),
                        file: entry.header.source.path.as_deref().map(path_text),
                        field: None,
                        line: None,
                        message: e.message,
                        remedy: e.hint,
                    }),
                }
            }
            Ok(Validation {
                valid: errors.is_empty(),
                skills: valid,
                errors,
            })
        })
        .await
        .map_err(KernelError::from)
}

pub fn metrics(
    skills: &Skills,
    name: Option<&str>,
    prometheus: bool,
) -> Result<MetricsReport, KernelError> {
    if prometheus {
        return Ok(MetricsReport::Prometheus {
            prometheus: skills.metrics().render_prometheus(),
        });
    }
    let metrics = match name {
        Some(n) => {
            let entry = skills.registry.get(n)?;
            let name = entry.header.meta.name;
            let mut one = serde_json::Map::new();
            one.insert(name.clone(), to_json(&skills.metrics().skill(&name)));
            json!({ "skills": one })
        }
        None => to_json(&skills.metrics().snapshot()),
    };
    Ok(MetricsReport::Json { metrics })
}

/// Closes the skill's circuit breaker, zeroes its metrics and forgets its
/// conversation, in memory and in the session store.
pub fn reset(shared: &Shared, skills: &Skills, spec: &str) -> Result<SkillReset, KernelError> {
    let entry = skills.registry.get(spec)?;
    let name = entry.header.meta.name;
    skills.executor.reset(&name);
    skills.metrics().reset(&name);
    shared.forget_skill_state(&name);
    let forgot = skills.clear_conversation(&name);
    shared.forget_skill_conversation(&name);
    Ok(SkillReset {
        breaker: to_json(&skills.executor.breaker(&name)),
        skill: name,
        conversation_cleared: forgot,
    })
}

/// `target` as a path when it names a file or folder (or looks like one).
fn as_path(target: &str) -> Option<PathBuf> {
    let looks = target.contains('/') || target.ends_with(".yaml") || target.ends_with(".md");
    let path = PathBuf::from(target);
    (looks || path.exists()).then_some(path)
}

/// Loads a skill file, or the manifest inside a skill folder, as found in
/// `origin`.
async fn load_path(path: &Path, origin: Origin) -> Result<skillkernel_skills::Skill, LoadError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = if path.is_dir() {
            skillkernel_skills::format::folder_manifest(&path).ok_or_else(|| {
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
