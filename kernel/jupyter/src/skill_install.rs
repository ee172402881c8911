//! `install`, `update`, `remove` and `installed`: shared skills into the
//! user's skill directory (`skillkernel-install`), for `%skill` and
//! `skill_request` alike. Each change is audited and the registry rescans
//! at once, so the skill runs (or is gone) in the very next cell.

use serde_json::json;
use skillkernel_install::signature::SignatureCheck;
use skillkernel_install::{InstallError, InstallRequest, Installed, Installer};
use skillkernel_protocol::content::{InstallReport, InstalledSkill};
use skillkernel_sandbox::audit::{fields_of, Subject};
use skillkernel_skills::service::Skills;
use skillkernel_skills::trust::TrustMark;
use skillkernel_skills::{ErrorCode, SkillError};

use crate::errors::KernelError;
use crate::session::Shared;

fn failed(e: InstallError) -> KernelError {
    SkillError::new(
        ErrorCode::InstallError,
        e.to_string(),
        "see \"Installing skills\" in docs/skills.md",
    )
    .into()
}

fn installer(skills: &Skills) -> Result<Installer, KernelError> {
    let Some(user_dir) = skills.registry.config().user_dir.clone() else {
        return Err(SkillError::new(
            ErrorCode::InstallError,
            "this kernel has no user skill directory to install into",
            "set `[skills] user_dir`, or HOME / XDG_DATA_HOME for the daemon",
        )
        .into());
    };
    Ok(Installer::new(user_dir, skills.signatures.clone()))
}

fn report(i: &Installed, trusted: bool) -> InstallReport {
    InstallReport {
        name: i.name.clone(),
        skill: i.entry.skill.clone(),
        path: i.path.display().to_string(),
        source: i.entry.source.display(),
        resolved: i.entry.resolved.clone(),
        digest: i.entry.digest.clone(),
        previous_digest: i.previous_digest.clone(),
        signature: i.signature.describe(),
        signed_by: i.entry.signed_by.clone(),
        trusted,
    }
}

/// Records `event` for the skill `id` (`name@version`) in the audit log.
fn audit(shared: &Shared, event: &str, id: &str, fields: serde_json::Value) {
    let Some(sandbox) = shared.sandbox() else {
        return;
    };
    let (name, version) = id.split_once('@').unwrap_or((id, ""));
    sandbox.audit().record(
        event,
        &Subject::skill("skill", name, version),
        fields_of(fields),
    );
}

/// Trusts a skill a configured key signed (`[skills.signatures]
/// trust_signed`) at the digest installed, through the registry's trust
/// as `%skill trust` does (recorded with its asks, audited). Called after
/// the rescan, so the registry knows the new files. Whether it is trusted.
async fn trust_signed(skills: &Skills, i: &Installed) -> bool {
    let SignatureCheck::Verified { key } = &i.signature else {
        return false;
    };
    if !skills.signatures.trust_signed {
        return false;
    }
    let (name, digest, via) = (
        i.name.clone(),
        i.entry.digest.clone(),
        format!("signature by {key}"),
    );
    let granted = skills
        .with_registry(move |r| {
            let skill = r.loaded(&name)?;
            let status = r.trust().grant(&skill, Some(&digest), &via)?;
            Ok(status.mark == TrustMark::Trusted)
        })
        .await;
    granted.unwrap_or_else(|e| {
        tracing::warn!(skill = %i.entry.skill, error = %e, "a signed skill was installed but not trusted");
        false
    })
}

/// Rescans the skill directories so the change shows at once.
async fn rescan(skills: &Skills) {
    if let Err(e) = skills.reload(None).await {
        tracing::warn!(error = %e, "rescan after an install failed; the watcher will catch up");
    }
}

pub async fn install(
    shared: &Shared,
    skills: &Skills,
    source: String,
    git_ref: Option<String>,
    subdir: Option<String>,
) -> Result<InstallReport, KernelError> {
    let installed = installer(skills)?
        .install(&InstallRequest {
            source,
            git_ref,
            subdir,
            base: Some(skills.working_dir.clone()),
        })
        .await
        .map_err(failed)?;
    rescan(skills).await;
    let r = report(&installed, trust_signed(skills, &installed).await);
    audit(
        shared,
        "skill_installed",
        &r.skill,
        json!({"source": r.source, "resolved": r.resolved, "digest": r.digest, "signature": r.signature, "trusted": r.trusted}),
    );
    Ok(r)
}

/// Updates `name`, or every installed skill; stops at the first failure.
pub async fn update(
    shared: &Shared,
    skills: &Skills,
    name: Option<&str>,
) -> Result<Vec<InstallReport>, KernelError> {
    let installer = installer(skills)?;
    let names: Vec<String> = match name {
        Some(n) => vec![n.to_owned()],
        None => installer.installed_names().map_err(failed)?,
    };
    let mut updated = Vec::new();
    for n in names {
        updated.push(installer.update(&n).await.map_err(failed)?);
    }
    rescan(skills).await;
    let mut out = Vec::new();
    for u in &updated {
        let r = report(u, trust_signed(skills, u).await);
        audit(
            shared,
            "skill_updated",
            &r.skill,
            json!({"source": r.source, "resolved": r.resolved, "digest": r.digest, "previous_digest": r.previous_digest, "signature": r.signature, "trusted": r.trusted}),
        );
        out.push(r);
    }
    Ok(out)
}

pub async fn remove(
    shared: &Shared,
    skills: &Skills,
    name: &str,
) -> Result<(String, String), KernelError> {
    let installer = installer(skills)?;
    let path = installer.user_dir().join(name).display().to_string();
    let owned = name.to_owned();
    let entry = tokio::task::spawn_blocking(move || installer.remove(&owned))
        .await
        .map_err(|e| failed(InstallError::Internal(e.to_string())))?
        .map_err(failed)?;
    audit(
        shared,
        "skill_removed",
        &entry.skill,
        json!({"source": entry.source.display(), "digest": entry.digest}),
    );
    rescan(skills).await;
    Ok((name.to_owned(), path))
}

pub async fn installed(skills: &Skills) -> Result<Vec<InstalledSkill>, KernelError> {
    let installer = installer(skills)?;
    let list = tokio::task::spawn_blocking(move || installer.list())
        .await
        .map_err(|e| failed(InstallError::Internal(e.to_string())))?
        .map_err(failed)?;
    Ok(list
        .into_iter()
        .map(|s| InstalledSkill {
            name: s.name,
            skill: s.entry.skill,
            source: s.entry.source.display(),
            subdir: s.entry.subdir,
            resolved: s.entry.resolved,
            digest: s.entry.digest,
            installed_at: s.entry.installed_at,
            signed_by: s.entry.signed_by,
            state: s.state.to_owned(),
        })
        .collect())
}
