//! Using a skill: load (a full parse), init (dependency resolution, each
//! chosen dependency loaded), activate, and runs ([`ExecutionGuard`]).
//! Each step is a lifecycle transition ([`super::lifecycle`]).
//!
//! Locking: a slot's mutex is held while its own file is parsed, never
//! while the catalogue is locked for writing nor while another slot is
//! locked; inits are serialised by the registry's `init_lock`, so a
//! skill's dependencies are loaded one slot at a time without holding it.
//! A reload that resets the skill meanwhile makes activation try again.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::catalog::{Body, Slot};
use super::lifecycle::{Hook, State};
use super::{builtin, deps, read, SkillEntry, SkillRegistry};
use crate::format;
use crate::{ErrorCode, LoadError, Skill, SkillError};
use skillkernel_stdx::lock;

/// Attempts at activation when a reload resets the skill meanwhile.
const ATTEMPTS: usize = 3;

/// A run in progress: the skill is Executing while at least one guard
/// lives. Dropping it ends the run (back to Active, or Deactivated if the
/// skill was disabled meanwhile). After a reload of the skill the guard
/// still holds the skill it started with, and no longer counts.
pub struct ExecutionGuard {
    skill: Arc<Skill>,
    /// How long parsing took when this call was the skill's first use.
    loaded_in: Option<Duration>,
    slot: Arc<Slot>,
    generation: u64,
    started: Instant,
    registry: Weak<SkillRegistry>,
}

impl ExecutionGuard {
    pub fn skill(&self) -> &Arc<Skill> {
        &self.skill
    }

    /// The parse time, when starting this run loaded the skill (for the
    /// load-time metrics); `None` when it was already loaded.
    pub fn loaded_in(&self) -> Option<Duration> {
        self.loaded_in
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

    /// The version `spec` selects, loaded and initialised (as
    /// [`SkillRegistry::load`]): for callers that describe a skill in full
    /// (an MCP tool's schemas) without running it. **Blocking.**
    pub fn loaded(&self, spec: &str) -> Result<Arc<Skill>, SkillError> {
        let slot = self.select(spec)?;
        self.ensure_loaded(&slot)?;
        self.ensure_ready(&slot)?;
        let skill = lock(&slot.state).life.skill.clone();
        skill.ok_or_else(|| not_ready(&slot))
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
    ///
    /// A skill that asks for more than the default and is not trusted is
    /// refused here with `TRUST_REQUIRED` ([`crate::trust`]).
    pub fn begin_execution(self: &Arc<Self>, spec: &str) -> Result<ExecutionGuard, SkillError> {
        let slot = self.select(spec)?;
        let was_unloaded = lock(&slot.state).life.state() == State::Unloaded;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let skill = self.activate_slot(&slot)?;
            self.trust.check(&skill)?;
            let mut st = lock(&slot.state);
            // A reload meanwhile: run only what was checked.
            if !st
                .life
                .skill
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &skill))
            {
                last = Some(
                    st.life
                        .refuse(Hook::Execute, ", reloaded while it was checked"),
                );
                continue;
            }
            let loaded_in = if was_unloaded {
                st.life
                    .history()
                    .iter()
                    .rev()
                    .find(|t| t.hook == Hook::Load)
                    .map(|t| t.duration)
            } else {
                None
            };
            if st.life.state() == State::Active {
                st.life
                    .apply(Hook::Execute, State::Executing, Duration::ZERO)?;
            }
            match (st.life.state(), st.life.skill.clone()) {
                (State::Executing, Some(skill)) => {
                    st.life.executions += 1;
                    return Ok(ExecutionGuard {
                        skill,
                        loaded_in,
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
                st.life.fail_load(e, elapsed)?;
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
}

fn not_ready(slot: &Slot) -> SkillError {
    SkillError::new(
        ErrorCode::SkillExecutionError,
        format!("`{}` kept changing while it was being loaded", slot.id),
        "try again; if it persists, `%skill reload`",
    )
    .for_skill(&slot.id)
}
