//! Reading the registry: listings, search, selection, `%skill info`,
//! failures. In memory and cheap: a read lock on the catalogue, then each
//! slot's mutex briefly.

use std::sync::Arc;

use semver::Version;

use super::catalog::{Catalog, Slot};
use super::{
    read, Failure, Query, ReloadReport, ScanCounts, SearchHit, SkillEntry, SkillInfo,
    SkillRegistry, State,
};
use crate::SkillError;
use skillkernel_stdx::lock;

impl SkillRegistry {
    /// Every skill version, by name then highest version first; a version
    /// declared in several places is listed once per source, the shadowed
    /// ones with `shadowed_by`.
    pub fn list(&self) -> Vec<SkillEntry> {
        let cat = read(&self.catalog);
        let mut out = Vec::new();
        for versions in cat.names.values() {
            for slot in versions.ordered() {
                out.extend(self.entries(&cat, slot));
            }
        }
        out
    }

    /// Every skill name (for completion).
    pub fn names(&self) -> Vec<String> {
        read(&self.catalog).names.keys().cloned().collect()
    }

    /// Skills matching `query` (see [`Query`]), best first: for each name,
    /// the version `get(name)` selects.
    pub fn search(&self, query: &str) -> Result<Vec<SearchHit>, SkillError> {
        let query = Query::parse(query)?;
        let cat = read(&self.catalog);
        let mut scored: Vec<(u32, &str)> = cat
            .docs
            .iter()
            .filter_map(|d| d.score(&query).map(|s| (s, d.skill.as_str())))
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        Ok(scored
            .into_iter()
            .filter_map(|(score, name)| {
                let slot = cat.preferred(name)?;
                Some(SearchHit {
                    entry: self.entries(&cat, slot).swap_remove(0),
                    score,
                    versions: versions_of(&cat, name),
                })
            })
            .collect())
    }

    /// The version `spec` selects (`name`, `name@1.2`, `name@^1`, …), or
    /// `SKILL_NOT_FOUND` with a hint. A Failed version is returned (with
    /// its error); [`SkillRegistry::activate`] refuses it.
    pub fn get(&self, spec: &str) -> Result<SkillEntry, SkillError> {
        let slot = self.select(spec)?;
        let cat = read(&self.catalog);
        Ok(self.entries(&cat, &slot).swap_remove(0))
    }

    /// What `%skill info` shows of the version `spec` selects.
    pub fn info(&self, spec: &str) -> Result<SkillInfo, SkillError> {
        let slot = self.select(spec)?;
        let cat = read(&self.catalog);
        let entry = self.entries(&cat, &slot).swap_remove(0);
        let dependents = cat
            .names
            .values()
            .flat_map(|v| v.ordered())
            .filter(|other| {
                other
                    .header()
                    .dependencies
                    .iter()
                    .any(|d| d.name == slot.name && d.version.matches(&slot.version))
            })
            .map(|other| other.id.clone())
            .collect();
        let st = lock(&slot.state);
        Ok(SkillInfo {
            entry,
            executions: st.life.executions,
            history: st.life.history(),
            shadowed: st.candidates[1..]
                .iter()
                .map(|c| c.header.source.clone())
                .collect(),
            dependents,
            resolved: st
                .resolution
                .iter()
                .flat_map(|r| r.picks.iter().map(|(n, v)| format!("{n}@{v}")))
                .collect(),
            versions: versions_of(&cat, &slot.name),
        })
    }

    /// Every broken file and Failed version, with its error.
    pub fn failures(&self) -> Vec<Failure> {
        read(&self.catalog).failures()
    }

    /// Why the index is not in use, when it is not.
    pub fn index_unusable(&self) -> Option<String> {
        self.index.unusable_reason()
    }

    /// How much file I/O the registry has done since it opened.
    pub fn io_counts(&self) -> ScanCounts {
        self.io.counts()
    }

    /// Reports of the changes the watcher applies, as they happen.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<ReloadReport>> {
        self.reports.subscribe()
    }

    /// The listing rows of `slot`: its in-effect source, then the shadowed.
    pub(super) fn entries(&self, cat: &Catalog, slot: &Slot) -> Vec<SkillEntry> {
        let disabled = cat.disabled.get(&slot.id).cloned();
        let st = lock(&slot.state);
        let winner = st.candidates[0].header.source.origin;
        st.candidates
            .iter()
            .enumerate()
            .map(|(i, c)| SkillEntry {
                id: slot.id.clone(),
                header: c.header.clone(),
                state: if i == 0 {
                    st.life.state()
                } else {
                    State::Unloaded
                },
                disabled: disabled.clone(),
                shadowed_by: (i > 0).then_some(winner),
                error: if i == 0 {
                    st.life.error.clone()
                } else {
                    c.error.clone().map(Into::into)
                },
            })
            .collect()
    }
}

fn versions_of(cat: &Catalog, name: &str) -> Vec<Version> {
    let mut v: Vec<Version> = cat
        .names
        .get(name)
        .map(|v| v.ordered().map(|s| s.version.clone()).collect())
        .unwrap_or_default();
    v.sort_by(|a, b| b.cmp(a));
    v.dedup();
    v
}
