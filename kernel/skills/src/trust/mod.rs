//! Workspace trust: a skill that did not come with the binary and asks
//! for more than the default runs only once the user trusted it.
//!
//! * What a skill asks for is [`asks::asks_of`] its parsed definition: a
//!   program, a tool script, an MCP server's tools, network, paths outside
//!   the workspace, writable paths, environment variables.
//! * Trust is recorded in the user's [`store::TrustStore`] against the
//!   blake3 [`digest`] of every file of the skill. Any change to those
//!   files makes the digest differ, and the skill is untrusted again until
//!   trusted again.
//! * Built-in skills and skills a cell defined (`%%skill`, `%skill load`)
//!   are the binary's and the user's own: never asked about.
//! * `[skills] trust` chooses: `ask` (the default), `all` (trust every
//!   skill, as before trust existed), `builtin-only` (a skill from
//!   anywhere else may not ask for more than the default at all).
//!
//! [`Trust::check`] runs before every skill run and must stay cheap: a
//! digest is cached per skill root while the registry's watcher watches
//! it ([`Trust::forget`] is the watcher's invalidation), the store is
//! re-read only when its file changes. Without a watcher every check
//! digests the files again.
//!
//! This module never runs a skill and never widens a sandbox policy: it
//! only says yes or no.

pub mod asks;
pub mod digest;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::json;
use skillkernel_sandbox::audit::{fields_of, AuditLog, Subject};
use skillkernel_stdx::{lock, read, write};

pub use asks::{asks_of, Ask};
pub use digest::{DigestError, DigestManifest};
pub use store::{StoreError, TrustRecord, TrustStore};

use crate::model::{Origin, Skill};
use crate::{ErrorCode, SkillError};

/// `[skills] trust`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustPolicy {
    /// A skill that asks for more than the default runs once trusted.
    #[default]
    Ask,
    /// Every skill is trusted.
    All,
    /// Only built-in skills may ask for more than the default.
    BuiltinOnly,
}

impl TrustPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustPolicy::Ask => "ask",
            TrustPolicy::All => "all",
            TrustPolicy::BuiltinOnly => "builtin-only",
        }
    }
}

/// How [`Trust`] is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustSettings {
    pub policy: TrustPolicy,
    /// The trust store's file; `None`: nothing can be trusted (under `ask`).
    pub store: Option<PathBuf>,
    /// The workspace paths are judged against (the kernel's working
    /// directory, where programs run).
    pub workspace: PathBuf,
}

/// Where a skill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustMark {
    /// Built in, or defined by a cell: the binary's or the user's own.
    Own,
    /// Asks for nothing beyond the default.
    NotNeeded,
    /// `[skills] trust = "all"`.
    ByConfig,
    /// Trusted at its current digest.
    Trusted,
    /// Asks for more and was never trusted.
    Untrusted,
    /// Trusted once; its files changed since.
    Changed,
    /// `[skills] trust = "builtin-only"`: it may not run.
    Refused,
    /// The store or the skill's files cannot be read.
    Unknown,
}

impl TrustMark {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustMark::Own => "own",
            TrustMark::NotNeeded => "not needed",
            TrustMark::ByConfig => "all trusted",
            TrustMark::Trusted => "trusted",
            TrustMark::Untrusted => "untrusted",
            TrustMark::Changed => "changed",
            TrustMark::Refused => "refused",
            TrustMark::Unknown => "unknown",
        }
    }

    /// Whether a skill so marked may run.
    pub fn may_run(self) -> bool {
        matches!(
            self,
            TrustMark::Own | TrustMark::NotNeeded | TrustMark::ByConfig | TrustMark::Trusted
        )
    }
}

/// A skill's standing, with what decides it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustStatus {
    pub mark: TrustMark,
    pub asks: Vec<Ask>,
    /// The digest of its files now (hex), when it needs trust.
    pub digest: Option<String>,
    /// The store's record for it, when there is one.
    pub record: Option<TrustRecord>,
    /// What could not be read (store, files), when `mark` is `Unknown`.
    pub problem: Option<String>,
}

/// A skill root's digest as last computed.
#[derive(Debug, Clone)]
struct Known {
    /// The root resolved: the store's key.
    key: String,
    digest: Result<String, DigestError>,
}

/// The trust check and decisions of one registry.
pub struct Trust {
    settings: TrustSettings,
    store: Option<TrustStore>,
    known: Mutex<HashMap<PathBuf, Arc<Known>>>,
    /// What each manifest's skill asks for, while watched (listings).
    asks: Mutex<HashMap<PathBuf, Vec<Ask>>>,
    /// Directories the registry's watcher watches: digests under them are
    /// cached until [`Trust::forget`].
    watched: RwLock<Vec<PathBuf>>,
    /// Bumped by every forget: a digest computed across one is not cached.
    forgets: AtomicU64,
    /// Where trust given, withdrawn and refused is recorded (the sandbox's
    /// audit log); unset: the daemon log only.
    audit: OnceLock<Arc<AuditLog>>,
}

impl Trust {
    pub fn new(settings: TrustSettings) -> Trust {
        Trust {
            store: settings.store.as_ref().map(TrustStore::new),
            settings,
            known: Mutex::new(HashMap::new()),
            asks: Mutex::new(HashMap::new()),
            watched: RwLock::new(Vec::new()),
            forgets: AtomicU64::new(0),
            audit: OnceLock::new(),
        }
    }

    pub fn policy(&self) -> TrustPolicy {
        self.settings.policy
    }

    pub fn store_path(&self) -> Option<&Path> {
        self.store.as_ref().map(TrustStore::path)
    }

    /// Where `skill` stands. **Blocking** when its digest is not cached.
    pub fn status(&self, skill: &Skill) -> TrustStatus {
        let asks = match skill.source.origin {
            Origin::Builtin | Origin::Cell => Vec::new(),
            _ => asks_of(skill, &self.settings.workspace),
        };
        self.status_of(skill.source.origin, skill.source.path.as_deref(), asks)
    }

    /// What the skill whose manifest is `manifest` asks for: remembered
    /// while its folder is watched, else from `parse` (a full parse, for
    /// listings of skills not loaded yet). `None` when it does not parse.
    pub fn asks_for_file(
        &self,
        manifest: &Path,
        parse: impl FnOnce() -> Option<Skill>,
    ) -> Option<Vec<Ask>> {
        if let Some(asks) = lock(&self.asks).get(manifest) {
            return Some(asks.clone());
        }
        let before = self.forgets.load(Ordering::SeqCst);
        let asks = asks_of(&parse()?, &self.settings.workspace);
        if self.is_watched(manifest) {
            let mut cache = lock(&self.asks);
            if self.forgets.load(Ordering::SeqCst) == before {
                cache.insert(manifest.to_path_buf(), asks.clone());
            }
        }
        Some(asks)
    }

    /// Where a skill from `origin` at `manifest` that asks for `asks`
    /// stands. **Blocking** when its digest is not cached.
    pub fn status_of(
        &self,
        origin: Origin,
        manifest: Option<&Path>,
        asks: Vec<Ask>,
    ) -> TrustStatus {
        let mut status = TrustStatus {
            mark: TrustMark::NotNeeded,
            asks,
            digest: None,
            record: None,
            problem: None,
        };
        if matches!(origin, Origin::Builtin | Origin::Cell) {
            status.asks.clear();
            status.mark = TrustMark::Own;
            return status;
        }
        if status.asks.is_empty() {
            return status;
        }
        match self.settings.policy {
            TrustPolicy::All => {
                status.mark = TrustMark::ByConfig;
                return status;
            }
            TrustPolicy::BuiltinOnly => {
                status.mark = TrustMark::Refused;
                return status;
            }
            TrustPolicy::Ask => {}
        }
        let Some(manifest) = manifest else {
            status.mark = TrustMark::Untrusted;
            return status;
        };
        let known = self.known(manifest);
        let digest = match &known.digest {
            Ok(d) => d.clone(),
            Err(e) => {
                status.mark = TrustMark::Unknown;
                status.problem = Some(e.to_string());
                return status;
            }
        };
        status.digest = Some(digest.clone());
        let Some(store) = &self.store else {
            status.mark = TrustMark::Untrusted;
            return status;
        };
        match store.read() {
            Err(e) => {
                status.mark = TrustMark::Unknown;
                status.problem = Some(e.to_string());
            }
            Ok(file) => {
                status.record = file.skills.get(&known.key).cloned();
                // The files and what the running definition asks for must
                // both be what was trusted: a definition loaded before the
                // files changed (no watcher, or trust given by another
                // kernel) would otherwise run under the new files' trust.
                let asks_granted = |r: &TrustRecord| {
                    r.asks.len() == status.asks.len()
                        && r.asks
                            .iter()
                            .zip(&status.asks)
                            .all(|(g, a)| *g == a.to_string())
                };
                status.mark = match &status.record {
                    Some(r) if r.digest == digest && asks_granted(r) => TrustMark::Trusted,
                    Some(_) => TrustMark::Changed,
                    None => TrustMark::Untrusted,
                };
            }
        }
        status
    }

    /// Ok when `skill` may run; else `TRUST_REQUIRED`, naming what it asks
    /// for and the command that trusts it. **Blocking** when its digest is
    /// not cached.
    pub fn check(&self, skill: &Skill) -> Result<TrustStatus, SkillError> {
        let status = self.status(skill);
        if status.mark.may_run() {
            return Ok(status);
        }
        if let Some(audit) = self.audit.get() {
            // Once per skill version, standing and digest: a refusal
            // repeats per run.
            let key = format!(
                "{}:{}",
                status.mark.as_str(),
                status.digest.as_deref().unwrap_or("")
            );
            audit.record_once(
                "skill_refused_untrusted",
                &key,
                &subject(skill),
                audit_fields(skill, &status, json!({ "mark": status.mark })),
            );
        }
        Err(refusal(skill, &status, self.settings.policy))
    }

    /// Records trust events in `audit` from now on.
    pub fn set_audit(&self, audit: Arc<AuditLog>) {
        let _ = self.audit.set(audit);
    }

    /// Records trust in `skill` at its digest now; `reviewed`, when given,
    /// must be that digest (what the user was shown). **Blocking.**
    pub fn grant(
        &self,
        skill: &Skill,
        reviewed: Option<&str>,
        via: &str,
    ) -> Result<TrustStatus, SkillError> {
        let id = skill.id();
        let mut status = self.status(skill);
        match status.mark {
            TrustMark::Own | TrustMark::NotNeeded | TrustMark::ByConfig => return Ok(status),
            TrustMark::Refused => return Err(refusal(skill, &status, self.settings.policy)),
            TrustMark::Unknown => {
                return Err(trust_error(
                    &id,
                    format!(
                        "cannot trust `{id}`: {}",
                        status
                            .problem
                            .as_deref()
                            .unwrap_or("its files cannot be read")
                    ),
                    "fix what the message names, then trust it again",
                ))
            }
            TrustMark::Trusted | TrustMark::Untrusted | TrustMark::Changed => {}
        }
        if let Some(path) = skill.source.path.as_deref() {
            // What is trusted is what is on disk now: a definition loaded
            // before an edit must not pass for it.
            let fresh = crate::format::load_file(path, skill.source.origin)
                .map(|f| asks_of(&f, &self.settings.workspace));
            if fresh.as_ref().ok() != Some(&status.asks) {
                return Err(trust_error(
                    &id,
                    format!("`{id}` changed on disk since it was loaded"),
                    &format!(
                        "`%skill reload {}` (or wait for the watcher), review it, then trust it",
                        skill.meta.name
                    ),
                ));
            }
        }
        let (Some(store), Some(digest), Some(manifest)) = (
            &self.store,
            status.digest.clone(),
            skill.source.path.as_deref(),
        ) else {
            return Err(trust_error(
                &id,
                format!("cannot trust `{id}`: this kernel has no trust store"),
                "start the daemon with a state directory (`--state-dir`)",
            ));
        };
        if let Some(seen) = reviewed {
            if seen != digest {
                return Err(trust_error(
                    &id,
                    format!(
                        "`{id}` changed after it was shown to you (digest {seen}, now {digest})"
                    ),
                    "review it again and trust what is there now",
                ));
            }
        }
        let key = self.known(manifest).key.clone();
        let record = TrustRecord {
            skill: id.clone(),
            digest,
            asks: status.asks.iter().map(|a| a.to_string()).collect(),
            trusted_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            via: via.to_owned(),
        };
        store
            .update(|f| f.skills.insert(key, record.clone()))
            .map_err(|e| trust_error(&id, e.to_string(), "then trust it again"))?;
        tracing::info!(target: "skillkernel::skills", skill = %id, via, "skill trusted");
        if let Some(audit) = self.audit.get() {
            audit.record(
                "skill_trusted",
                &subject(skill),
                audit_fields(skill, &status, json!({ "via": via })),
            );
        }
        status.mark = TrustMark::Trusted;
        status.record = Some(record);
        Ok(status)
    }

    /// Withdraws trust in `skill`; whether there was any. **Blocking.**
    pub fn withdraw(&self, skill: &Skill) -> Result<bool, SkillError> {
        let id = skill.id();
        let (Some(store), Some(manifest)) = (&self.store, skill.source.path.as_deref()) else {
            return Ok(false);
        };
        let key = self.known(manifest).key.clone();
        let removed = store
            .update(|f| f.skills.remove(&key).is_some())
            .map_err(|e| trust_error(&id, e.to_string(), "then withdraw it again"))?;
        if removed {
            tracing::info!(target: "skillkernel::skills", skill = %id, "skill trust withdrawn");
            if let Some(audit) = self.audit.get() {
                let status = self.status(skill);
                audit.record(
                    "skill_trust_withdrawn",
                    &subject(skill),
                    audit_fields(skill, &status, json!({})),
                );
            }
        }
        Ok(removed)
    }

    /// The watcher saw `paths` change: digests of roots they touch are
    /// computed again when next needed.
    pub fn forget(&self, paths: &[PathBuf]) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        let touched = |root: &Path| {
            paths
                .iter()
                .any(|p| p.starts_with(root) || root.starts_with(p))
        };
        lock(&self.known).retain(|root, _| !touched(root));
        lock(&self.asks).retain(|manifest, _| !touched(&digest::skill_root(manifest)));
    }

    /// Every digest is computed again when next needed (a rescan).
    pub fn forget_all(&self) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        lock(&self.known).clear();
        lock(&self.asks).clear();
    }

    /// The directories the registry's watcher now watches.
    pub fn set_watched(&self, dirs: Vec<PathBuf>) {
        *write(&self.watched) = dirs;
    }

    fn is_watched(&self, path: &Path) -> bool {
        read(&self.watched).iter().any(|d| path.starts_with(d))
    }

    /// The digest of the skill whose manifest is `manifest`: cached while
    /// watched, else computed now.
    fn known(&self, manifest: &Path) -> Arc<Known> {
        let root = digest::skill_root(manifest);
        if let Some(k) = lock(&self.known).get(&root) {
            return Arc::clone(k);
        }
        let before = self.forgets.load(Ordering::SeqCst);
        let key = std::fs::canonicalize(&root)
            .unwrap_or_else(|_| root.clone())
            .display()
            .to_string();
        let manifest = digest::manifest(&root);
        // What a link out of the skill leads to, the watcher cannot see.
        let cacheable = manifest.as_ref().is_ok_and(|m| !m.follows_outside);
        let known = Arc::new(Known {
            key,
            digest: manifest.map(|m| m.digest()),
        });
        if cacheable && self.is_watched(&root) {
            let mut cache = lock(&self.known);
            if self.forgets.load(Ordering::SeqCst) == before {
                cache.insert(root, Arc::clone(&known));
            }
        }
        known
    }
}

fn subject(skill: &Skill) -> Subject {
    Subject::skill("skill", &skill.meta.name, &skill.meta.version.to_string())
}

/// An audit event's fields: the skill's path, digest and what it asks
/// for, then `extra`.
fn audit_fields(
    skill: &Skill,
    status: &TrustStatus,
    extra: serde_json::Value,
) -> serde_json::Map<String, serde_json::Value> {
    let asks: Vec<String> = status.asks.iter().map(|a| a.to_string()).collect();
    let mut fields = fields_of(json!({
        "path": skill.source.path.as_ref().map(|p| p.display().to_string()),
        "digest": status.digest,
        "asks": asks,
    }));
    fields.extend(fields_of(extra));
    fields
}

fn trust_error(id: &str, message: String, hint: &str) -> SkillError {
    SkillError::new(ErrorCode::TrustRequired, message, hint).for_skill(id)
}

/// The `TRUST_REQUIRED` error for a skill that may not run.
fn refusal(skill: &Skill, status: &TrustStatus, policy: TrustPolicy) -> SkillError {
    let id = skill.id();
    let name = &skill.meta.name;
    let asks: Vec<String> = status.asks.iter().map(|a| a.to_string()).collect();
    let asks = asks.join("; ");
    let from = skill.source.display();
    let trust_it =
        format!("review it, then `%skill trust {name}` (or `skillctl skill trust {name}`)");
    match status.mark {
        TrustMark::Refused => trust_error(
            &id,
            format!(
                "`{id}` ({from}) asks for more than the default and `[skills] trust` is \
                 `{}`: only built-in skills may. It asks for: {asks}",
                policy.as_str()
            ),
            "set `[skills] trust = \"ask\"` in the daemon's config to trust skills one by one",
        ),
        TrustMark::Changed => {
            let when = status
                .record
                .as_ref()
                .map(|r| format!(" on {}", r.trusted_at))
                .unwrap_or_default();
            trust_error(
                &id,
                format!(
                    "`{id}` ({from}) changed since it was trusted{when}: its files differ. \
                     It asks for: {asks}"
                ),
                &trust_it,
            )
        }
        TrustMark::Unknown => trust_error(
            &id,
            format!(
                "`{id}` cannot be checked: {}",
                status.problem.as_deref().unwrap_or("unknown")
            ),
            "fix what the message names; skills that ask for nothing keep running",
        ),
        _ => trust_error(
            &id,
            format!("`{id}` ({from}) is not trusted. It asks for: {asks}"),
            &trust_it,
        ),
    }
}
