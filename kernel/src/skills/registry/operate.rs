//! Using skills: load, init (dependency resolution), activate, execute
//! (an RAII guard), enable / disable, unload, and `%%skill` cells. Each
//! step is a lifecycle transition ([`super::lifecycle`]).
//!
//! Locking: a slot's mutex is held while its own file is parsed, never
//! while the catalogue is locked for writing nor while another slot is
//! locked; inits are serialised by the registry's `init_lock`, so a
//! skill's dependencies are loaded one slot at a time without holding it.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::catalog::{Body, Slot};
use super::lifecycle::{Hook, State};
use super::select::{unknown_name, SkillSpec};
use super::{builtin, deps, read, write, SkillEntry, SkillRegistry};
use crate::session::lock;
use crate::skills::format;
use crate::skills::model::Origin;
use crate::skills::{ErrorCode, LoadError, Skill, SkillError};

/// Attempts at activation when a reload resets the skill meanwhile.
const ATTEMPTS: usize = 3;

/// A run in progress: the skill is Executing while at least one guard
/// lives. Dropping it ends the run (back to Active, or Deactivated if the
/// skill was disabled meanwhile). After a reload of the skill the guard
/// still holds the skill it started with, and no longer counts.
pub struct ExecutionGuard {
    skill: Arc<Skill>,
    slot: Arc<Slot>,
    generation: u64,
    started: Instant,
    registry: Weak<SkillRegistry>,
}

impl ExecutionGuard {
    pub fn skill(&self) -> &Arc<Skill> {
        &self.skill
    }
}

impl Drop for ExecutionGuard {
    fn drop(&mut self) {
        let disabled = self
            .registry
            .upgrade()
            .is_some_and(|r| read(&r.catalog).disabled.contains_key(&self.slot.id));
        let mut st = lock(&self.slot.state);
        if st.life.generation != self.generation || st.life.state() != State::Executing {
            return;
        }
        st.life.executions = st.life.executions.saturating_sub(1);
        if st.life.executions == 0 {
            let (hook, to) = if disabled {
                (Hook::Deactivate, State::Deactivated)
            } else {
                (Hook::Execute, State::Active)
            };
            // Executing → Active / Deactivated is always allowed.
            let _ = st.life.apply(hook, to, self.started.elapsed());
        }
    }
}

impl SkillRegistry {
    /// Loads and initialises the version `spec` selects (Ready), without
    /// activating it: `%skill load`. **Blocking** (parses on first use).
    pub fn load(&self, spec: &str) -> Result<SkillEntry, SkillError> {
        let slot = self.select(spec)?;
        self.ensure_loaded(&slot)?;
        self.ensure_ready(&slot)?;
        Ok(self.entries(&read(&self.catalog), &slot).swap_remove(0))
    }

    /// A session starts using the version `spec` selects: loaded and
    /// initialised if needed, then Active. **Blocking** (parses on first
    /// use).
    pub fn activate(&self, spec: &str) -> Result<Arc<Skill>, SkillError> {
        let slot = self.select(spec)?;
        self.activate_slot(&slot)
    }

    /// Starts a run of the version `spec` selects (activating it if
    /// needed); the skill is Executing until every guard is dropped.
    /// **Blocking** (parses on first use).
    pub fn begin_execution(self: &Arc<Self>, spec: &str) -> Result<ExecutionGuard, SkillError> {
        let slot = self.select(spec)?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            self.activate_slot(&slot)?;
            let mut st = lock(&slot.state);
            if st.life.state() == State::Active {
                st.life
                    .apply(Hook::Execute, State::Executing, Duration::ZERO)?;
            }
            match (st.life.state(), st.life.skill.clone()) {
                (State::Executing, Some(skill)) => {
                    st.life.executions += 1;
                    return Ok(ExecutionGuard {
                        skill,
                        generation: st.life.generation,
                        slot: slot.clone(),
                        started: Instant::now(),
                        registry: Arc::downgrade(self),
                    });
                }
                _ => last = Some(st.life.refuse(Hook::Execute, "")),
            }
        }
        Err(last.map(Into::into).unwrap_or_else(|| not_ready(&slot)))
    }

    fn activate_slot(&self, slot: &Arc<Slot>) -> Result<Arc<Skill>, SkillError> {
        if let Some(reason) = read(&self.catalog).disabled.get(&slot.id) {
            return Err(SkillError::new(
                ErrorCode::SkillNotFound,
                format!("`{}` is disabled: {reason}", slot.id),
                format!("`%skill enable {}` makes it usable again", slot.id),
            )
            .for_skill(&slot.id));
        }
        let mut last = None;
        for _ in 0..ATTEMPTS {
            self.ensure_loaded(slot)?;
            self.ensure_ready(slot)?;
            let mut st = lock(&slot.state);
            if st.life.state() == State::Ready {
                st.life
                    .apply(Hook::Activate, State::Active, Duration::ZERO)?;
            }
            match (st.life.state(), st.life.skill.clone()) {
                (State::Active | State::Executing, Some(skill)) => return Ok(skill),
                _ => last = Some(st.life.refuse(Hook::Activate, "")),
            }
        }
        Err(last.map(Into::into).unwrap_or_else(|| not_ready(slot)))
    }

    /// Unloaded → Loaded (a full parse), or the load error of a Failed
    /// version. Other states: nothing to do.
    pub(super) fn ensure_loaded(&self, slot: &Slot) -> Result<(), SkillError> {
        let mut st = lock(&slot.state);
        match st.life.state() {
            State::Unloaded => {}
            State::Failed if st.life.skill.is_none() => {
                return Err(st.life.error.clone().unwrap_or_else(|| not_ready(slot)))
            }
            _ => return Ok(()),
        }
        let started = Instant::now();
        let c = &st.candidates[0];
        let parsed = match &c.body {
            Body::File { path, .. } => {
                self.io.count_full_parse();
                format::load_file(path, c.header.source.origin).map(Arc::new)
            }
            Body::Builtin { text, path } => {
                self.io.count_full_parse();
                builtin::parse(text, path).map(Arc::new)
            }
            Body::Cell(skill) => Ok(skill.clone()),
        };
        let parsed = parsed.and_then(|skill| {
            if skill.meta.name == slot.name && skill.meta.version == slot.version {
                return Ok(skill);
            }
            let file = c.path().unwrap_or(std::path::Path::new("?"));
            Err(LoadError::new(
                file,
                format!("the file now declares `{}`, not `{}`", skill.id(), slot.id),
                "`%skill reload` picks up the change",
            ))
        });
        let elapsed = started.elapsed();
        match parsed {
            Ok(skill) => {
                st.life.skill = Some(skill);
                st.life.apply(Hook::Load, State::Loaded, elapsed)?;
                Ok(())
            }
            Err(e) => {
                st.life.fail(Hook::Load, e.into(), elapsed)?;
                Err(st.life.error.clone().unwrap_or_else(|| not_ready(slot)))
            }
        }
    }

    /// Loaded / Deactivated / Failed-at-init → Initializing → Ready:
    /// resolves the dependencies and loads each chosen version.
    fn ensure_ready(&self, slot: &Slot) -> Result<(), SkillError> {
        let _serial = lock(&self.init_lock);
        {
            let mut st = lock(&slot.state);
            match st.life.state() {
                State::Ready | State::Active | State::Executing => return Ok(()),
                State::Failed if st.life.skill.is_none() => {
                    return Err(st.life.error.clone().unwrap_or_else(|| not_ready(slot)))
                }
                _ => st
                    .life
                    .apply(Hook::Init, State::Initializing, Duration::ZERO)?,
            }
        }
        let started = Instant::now();
        let header = slot.header();
        let resolved = {
            let cat = read(&self.catalog);
            deps::resolve(&slot.name, &slot.version, &header.dependencies, &*cat)
        };
        let resolved = resolved.and_then(|r| {
            for (name, version) in &r.picks {
                let dep = read(&self.catalog).slot_for(name, version).cloned();
                let Some(dep) = dep else { continue };
                self.ensure_loaded(&dep).map_err(|e| {
                    SkillError::new(
                        ErrorCode::DependencyError,
                        format!(
                            "dependency `{}` of `{}` does not load: {}",
                            dep.id, slot.id, e.message
                        ),
                        e.hint,
                    )
                    .for_skill(&slot.id)
                })?;
            }
            Ok(r)
        });
        let mut st = lock(&slot.state);
        if st.life.state() != State::Initializing {
            return Err(st
                .life
                .refuse(Hook::Init, ", reset while its dependencies resolved")
                .into());
        }
        match resolved {
            Ok(r) => {
                st.resolution = Some(r);
                st.life.apply(Hook::Init, State::Ready, started.elapsed())?;
                Ok(())
            }
            Err(e) => {
                st.life.fail(Hook::Init, e.clone(), started.elapsed())?;
                Err(e)
            }
        }
    }

    /// Disables the versions `spec` names (a bare name: all of them):
    /// listed, not selectable, with `reason`; loaded ones are
    /// Deactivated, running ones when their last run ends. Persisted in
    /// the index. Returns the ids. **Blocking** (index write).
    pub fn disable(&self, spec: &str, reason: &str) -> Result<Vec<String>, SkillError> {
        let slots = self.matching(spec)?;
        {
            let mut cat = write(&self.catalog);
            for s in &slots {
                cat.disabled.insert(s.id.clone(), reason.to_string());
            }
            cat.rebuild_docs();
        }
        for s in &slots {
            let mut st = lock(&s.state);
            if matches!(
                st.life.state(),
                State::Loaded | State::Ready | State::Active
            ) {
                st.life
                    .apply(Hook::Deactivate, State::Deactivated, Duration::ZERO)?;
            }
            drop(st);
            self.index.with(|i| i.set_disabled(&s.id, Some(reason)));
        }
        self.index.with(|i| i.flush());
        Ok(slots.iter().map(|s| s.id.clone()).collect())
    }

    /// Makes the versions `spec` names selectable again (their next use
    /// initialises them again). Returns the ids. **Blocking** (index write).
    pub fn enable(&self, spec: &str) -> Result<Vec<String>, SkillError> {
        let slots = self.matching(spec)?;
        {
            let mut cat = write(&self.catalog);
            for s in &slots {
                cat.disabled.remove(&s.id);
            }
            cat.rebuild_docs();
        }
        for s in &slots {
            self.index.with(|i| i.set_disabled(&s.id, None));
        }
        self.index.with(|i| i.flush());
        Ok(slots.iter().map(|s| s.id.clone()).collect())
    }

    /// Drops the parsed skill of the versions `spec` names (a bare name:
    /// all of them), keeping their headers; an Active one is Deactivated
    /// first. Refused, for all of them, if one is running. Returns the ids
    /// unloaded.
    pub fn unload(&self, spec: &str) -> Result<Vec<String>, SkillError> {
        let slots = self.matching(spec)?;
        for s in &slots {
            let st = lock(&s.state);
            if matches!(st.life.state(), State::Executing | State::Initializing) {
                return Err(st.life.refuse(Hook::Unload, "").into());
            }
        }
        let mut unloaded = Vec::new();
        for s in &slots {
            let mut st = lock(&s.state);
            let state = st.life.state();
            if state == State::Active {
                st.life
                    .apply(Hook::Deactivate, State::Deactivated, Duration::ZERO)?;
            }
            if state != State::Unloaded {
                st.life
                    .apply(Hook::Unload, State::Unloaded, Duration::ZERO)?;
                st.resolution = None;
                unloaded.push(s.id.clone());
            }
        }
        Ok(unloaded)
    }

    /// Registers a skill defined by a `%%skill` cell: preferred over every
    /// other version of its name whenever it matches the request, never
    /// persisted. Replaces the cell's earlier definition of that name.
    /// Returns its id.
    pub fn register_inline(&self, mut skill: Skill) -> String {
        skill.source.origin = Origin::Cell;
        let mut cat = write(&self.catalog);
        let slot = cat.put_cell(Arc::new(skill));
        cat.rebuild_docs();
        slot.id.clone()
    }

    /// Forgets the cell definition of `name`; whether there was one.
    pub fn remove_inline(&self, name: &str) -> bool {
        let mut cat = write(&self.catalog);
        let had = cat.remove_cell(name);
        cat.rebuild_docs();
        had
    }

    /// The slots `spec` names: a bare name, every version; with a
    /// requirement, every version matching it.
    fn matching(&self, spec: &str) -> Result<Vec<Arc<Slot>>, SkillError> {
        let parsed = SkillSpec::parse(spec)?;
        let cat = read(&self.catalog);
        let Some(versions) = cat.names.get(&parsed.name) else {
            return Err(unknown_name(
                &parsed.name,
                cat.names.keys().map(String::as_str),
            ));
        };
        let slots: Vec<Arc<Slot>> = versions
            .ordered()
            .filter(|s| parsed.matches(&s.version))
            .cloned()
            .collect();
        drop(cat);
        if slots.is_empty() {
            // The same error as selection gives.
            return self.select(spec).map(|s| vec![s]);
        }
        Ok(slots)
    }
}

fn not_ready(slot: &Slot) -> SkillError {
    SkillError::new(
        ErrorCode::SkillExecutionError,
        format!("`{}` kept changing while it was being loaded", slot.id),
        "try again; if it persists, `%skill reload`",
    )
    .for_skill(&slot.id)
}
