//! Managing skills: enable / disable (persisted in the index), unload,
//! and `%%skill` cells. Each state change is a lifecycle transition
//! ([`super::lifecycle`]); a spec with a bare name acts on every version.

use std::sync::Arc;
use std::time::Duration;

use super::catalog::Slot;
use super::lifecycle::{Hook, State};
use super::select::{unknown_name, SkillSpec};
use super::{read, SkillRegistry};
use crate::model::Origin;
use crate::{Skill, SkillError};
use skillkernel_stdx::lock;

impl SkillRegistry {
    /// Disables the versions `spec` names (a bare name: all of them):
    /// listed, not selectable, with `reason`; loaded ones are
    /// Deactivated, running ones when their last run ends. Persisted in
    /// the index. Returns the ids. **Blocking** (index write).
    pub fn disable(&self, spec: &str, reason: &str) -> Result<Vec<String>, SkillError> {
        let slots = self.matching(spec)?;
        {
            let mut cat = self.catalog_mut();
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
            let mut cat = self.catalog_mut();
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
        let mut cat = self.catalog_mut();
        let slot = cat.put_cell(Arc::new(skill));
        cat.rebuild_docs();
        slot.id.clone()
    }

    /// Forgets the cell definition of `name`; whether there was one.
    pub fn remove_inline(&self, name: &str) -> bool {
        let mut cat = self.catalog_mut();
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
