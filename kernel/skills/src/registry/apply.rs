//! Changing the catalogue: a scan's outcome for one file (a new version,
//! a changed source, a file that now declares another version, a broken
//! edit — kept under the name and version the file last declared — or a
//! file gone), sources attached and removed, `%%skill` cells. No I/O; the
//! caller holds the catalogue for writing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::catalog::{Body, Candidate, Catalog, Changed, Slot};
use super::config::Root;
use super::lifecycle::{Hook, State};
use super::report::{Failure, ReloadReport};
use super::scan::{Outcome, Prior};
use crate::Skill;
use skillkernel_stdx::lock;

impl Catalog {
    /// Applies the scan of `path` (under `root`); slots whose in-effect
    /// source changed are pushed to `changed`.
    pub fn apply(
        &mut self,
        root: &Root,
        path: &Path,
        outcome: Outcome,
        report: &mut ReloadReport,
        changed: &mut Vec<Changed>,
    ) {
        match outcome {
            Outcome::NotASkill => self.remove_path(path, report, changed),
            Outcome::Header { header, stamp, .. } => {
                self.broken.remove(path);
                let body = Body::File {
                    path: path.to_path_buf(),
                    stamp,
                };
                let key = (header.meta.name.clone(), header.meta.version.clone());
                if self.by_path.get(path) == Some(&key) {
                    let slot = self.slot(&key.0, &key.1).cloned();
                    let Some(slot) = slot else { return };
                    let mut st = lock(&slot.state);
                    let Some(i) = st.candidates.iter().position(|c| c.path() == Some(path)) else {
                        return;
                    };
                    let c = &mut st.candidates[i];
                    let same = c.error.is_none()
                        && c.header == header
                        && matches!(&c.body, Body::File { stamp: s, .. } if s.blake3 == stamp.blake3);
                    *c = Candidate {
                        header,
                        body,
                        rank: root.rank,
                        error: None,
                    };
                    drop(st);
                    if same {
                        report.unchanged += 1;
                    } else {
                        report.updated.push(slot.id.clone());
                        if i == 0 {
                            changed.push(Changed::of(&slot));
                        }
                    }
                    return;
                }
                self.remove_path(path, report, changed);
                let candidate = Candidate {
                    header,
                    body,
                    rank: root.rank,
                    error: None,
                };
                let id = self.attach(candidate, changed);
                report.added.push(id);
            }
            Outcome::Broken { error, prior } => {
                let failure = |skill: Option<String>| Failure {
                    skill,
                    path: Some(path.to_path_buf()),
                    error: error.clone().into(),
                    load_error: Some(error.clone()),
                };
                if let Some((name, version)) = self.by_path.get(path).cloned() {
                    if let Some(slot) = self.slot(&name, &version).cloned() {
                        let mut st = lock(&slot.state);
                        if let Some(i) = st.candidates.iter().position(|c| c.path() == Some(path)) {
                            let new = st.candidates[i].error.as_ref() != Some(&error);
                            st.candidates[i].error = Some(error.clone());
                            drop(st);
                            // The same error again (a rescan of an unfixed
                            // file) changes nothing.
                            if i == 0 && new {
                                changed.push(Changed::of(&slot));
                            }
                        }
                        report.failed.push(failure(Some(slot.id.clone())));
                        return;
                    }
                }
                match prior {
                    Some(Prior { stamp, header }) => {
                        let candidate = Candidate {
                            header,
                            body: Body::File {
                                path: path.to_path_buf(),
                                stamp,
                            },
                            rank: root.rank,
                            error: Some(error.clone()),
                        };
                        let id = self.attach(candidate, changed);
                        report.failed.push(failure(Some(id)));
                    }
                    None => {
                        report.failed.push(failure(None));
                        self.broken.insert(path.to_path_buf(), error);
                    }
                }
            }
        }
    }

    /// Makes `skill` the `%%skill` cell definition of its name, replacing
    /// any earlier one; the new slot starts Loaded.
    pub fn put_cell(&mut self, skill: Arc<Skill>) -> Arc<Slot> {
        let header = skill.header();
        let slot = Arc::new(Slot::new(&header, self.history_len));
        {
            let mut st = lock(&slot.state);
            st.candidates.push(Candidate {
                header,
                body: Body::Cell(skill.clone()),
                rank: 0,
                error: None,
            });
            // Unloaded → Loaded is always allowed.
            let _ = st.life.apply(Hook::Load, State::Loaded, Duration::ZERO);
            st.life.skill = Some(skill);
        }
        let versions = self.names.entry(slot.name.clone()).or_default();
        versions.cell = Some(slot.clone());
        slot
    }

    /// Forgets the cell definition of `name`; whether there was one.
    pub fn remove_cell(&mut self, name: &str) -> bool {
        let Some(versions) = self.names.get_mut(name) else {
            return false;
        };
        let had = versions.cell.take().is_some();
        if versions.files.is_empty() {
            self.names.remove(name);
        }
        had
    }

    /// Adds a file or built-in `candidate` to its slot (created if new);
    /// returns the id.
    pub fn attach(&mut self, candidate: Candidate, changed: &mut Vec<Changed>) -> String {
        let h = &candidate.header;
        let (name, version) = (h.meta.name.clone(), h.meta.version.clone());
        if let Some(path) = candidate.path() {
            self.by_path
                .insert(path.to_path_buf(), (name.clone(), version.clone()));
        }
        let history_len = self.history_len;
        let versions = self.names.entry(name).or_default();
        let slot = versions
            .files
            .entry(version)
            .or_insert_with(|| Arc::new(Slot::new(&candidate.header, history_len)))
            .clone();
        let mut st = lock(&slot.state);
        let fresh = st.candidates.is_empty();
        let at = st
            .candidates
            .iter()
            .position(|c| candidate.order() < c.order())
            .unwrap_or(st.candidates.len());
        let failed = candidate.error.clone();
        st.candidates.insert(at, candidate);
        if fresh {
            if let Some(error) = failed {
                // Unloaded → Failed is always allowed.
                let _ = st.life.fail_load(error, Duration::ZERO);
            }
        }
        drop(st);
        if at == 0 && !fresh {
            changed.push(Changed::of(&slot));
        }
        slot.id.clone()
    }

    /// Forgets the file or broken file at `path`.
    pub fn remove_path(
        &mut self,
        path: &Path,
        report: &mut ReloadReport,
        changed: &mut Vec<Changed>,
    ) {
        if self.broken.remove(path).is_some() {
            report.removed.push(path.display().to_string());
        }
        let Some((name, version)) = self.by_path.remove(path) else {
            return;
        };
        let Some(slot) = self.slot(&name, &version).cloned() else {
            return;
        };
        let mut st = lock(&slot.state);
        let Some(i) = st.candidates.iter().position(|c| c.path() == Some(path)) else {
            return;
        };
        st.candidates.remove(i);
        let empty = st.candidates.is_empty();
        drop(st);
        if empty {
            report.removed.push(slot.id.clone());
            if let Some(versions) = self.names.get_mut(&name) {
                versions.files.remove(&version);
                if versions.files.is_empty() && versions.cell.is_none() {
                    self.names.remove(&name);
                }
            }
        } else if i == 0 {
            report.updated.push(slot.id.clone());
            changed.push(Changed::of(&slot));
        }
    }
}
