//! Applying a scan's outcome for one file to the catalogue: a new
//! version, a changed source, a file that now declares another version, a
//! broken edit (kept under the name and version the file last declared),
//! or a file gone. No I/O; the caller holds the catalogue for writing.

use std::path::Path;

use super::catalog::{Body, Candidate, Catalog, Changed};
use super::config::Root;
use super::report::{Failure, ReloadReport};
use super::scan::{Outcome, Prior};
use crate::session::lock;

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
}
