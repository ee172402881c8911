//! Rescans: the first discovery, `discover`, `reload(name)`,
//! `reload_all` (SIGUSR1, `%skill reload`) and the watcher's changes.
//!
//! A rescan walks a *scope* (a root, or one folder of it), scans each
//! file it finds ([`super::scan`]: stat, else hash, else parse), forgets
//! the known files under the scope it did not find, applies all of it to
//! the catalogue in one write, and then settles the versions whose source
//! changed: back to Unloaded (a `reload` transition), Failed if the new
//! source is broken, and loaded again at once if they had been loaded
//! (so the report names a broken edit immediately). The index is written
//! after the catalogue lock is released. Rescans are serialised.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::catalog::{Changed, Slot};
use super::config::Root;
use super::discover::{is_folder_manifest, walk};
use super::index::IndexEntry;
use super::lifecycle::{Hook, State};
use super::scan::{scan, How, Outcome, Prior};
use super::select::unknown_name;
use super::{builtin, read, Failure, ReloadReport, SkillRegistry};
use crate::SkillError;
use skillkernel_stdx::lock;

/// One file to look at, and how.
pub(super) struct Job {
    root: Root,
    path: PathBuf,
    loose: bool,
}

impl SkillRegistry {
    /// Rescans every root: new files are added, changed ones updated,
    /// deleted ones removed (index entries included). **Blocking.**
    pub fn discover(&self) -> ReloadReport {
        self.rescan_roots(Reset::Changed)
    }

    /// [`SkillRegistry::discover`], then every loaded or Failed version is
    /// reset and loaded again (retrying what failed), and directories that
    /// appeared since are watched. For SIGUSR1 and `%skill reload`.
    /// **Blocking.**
    pub fn reload_all(self: &Arc<Self>) -> ReloadReport {
        self.trust.forget_all();
        let report = self.rescan_roots(Reset::AllLoaded);
        if self.config.watch {
            self.sync_watcher();
        }
        report
    }

    /// Rescans every root, then drops index entries of files no longer
    /// discovered and flushes the index.
    pub(super) fn rescan_roots(&self, reset: Reset) -> ReloadReport {
        let scopes = self.roots.iter().map(|r| (r.clone(), r.dir.clone()));
        let report = self.rescan(scopes.collect(), Vec::new(), reset);
        if let Some(paths) = self.index.with(|i| i.paths()) {
            let stale: Vec<PathBuf> = {
                let cat = read(&self.catalog);
                paths
                    .into_iter()
                    .filter(|p| !cat.by_path.contains_key(p))
                    .collect()
            };
            for p in stale {
                self.index.with(|i| i.remove(&p));
            }
        }
        self.index.with(|i| i.flush());
        report
    }

    /// Re-reads the files of every version of `name` and loads each again
    /// (new files elsewhere are found by `reload_all` or the watcher).
    /// **Blocking.**
    pub fn reload(&self, name: &str) -> Result<ReloadReport, SkillError> {
        self.trust.forget_all();
        let paths: Vec<PathBuf> = {
            let cat = read(&self.catalog);
            let Some(versions) = cat.names.get(name) else {
                return Err(unknown_name(name, cat.names.keys().map(String::as_str)));
            };
            versions
                .ordered()
                .flat_map(|s| {
                    let st = lock(&s.state);
                    let paths: Vec<PathBuf> = st
                        .candidates
                        .iter()
                        .filter_map(|c| c.path().map(Path::to_path_buf))
                        .collect();
                    paths
                })
                .collect()
        };
        let files = paths
            .into_iter()
            .filter_map(|p| {
                Some(Job {
                    root: self.root_of(&p)?.clone(),
                    loose: !is_folder_manifest(&p),
                    path: p,
                })
            })
            .collect();
        let report = self.rescan(Vec::new(), files, Reset::Name(name.to_string()));
        Ok(report)
    }

    /// Scans `scopes` (walked) and `files` (as given), applies the
    /// outcomes, settles changed versions, then resets what `reset` asks.
    pub(super) fn rescan(
        &self,
        scopes: Vec<(Root, PathBuf)>,
        mut files: Vec<Job>,
        reset: Reset,
    ) -> ReloadReport {
        let _serial = lock(&self.rescan_lock);
        let started = Instant::now();
        let before = self.io.counts();
        let mut gone: Vec<PathBuf> = Vec::new();
        for (root, dir) in &scopes {
            let depth = dir
                .strip_prefix(&root.dir)
                .map_or(0, |r| r.components().count());
            // A scope deeper than the walk goes holds no skills.
            let walked = match self.config.max_depth.checked_sub(depth) {
                Some(left) => walk(dir, left),
                None => Vec::new(),
            };
            let found: Vec<_> = walked
                .into_iter()
                .filter(|f| self.root_of(&f.path).map(|r| r.rank) == Some(root.rank))
                .collect();
            let known = read(&self.catalog).paths_under(dir);
            for k in known {
                if !found.iter().any(|f| f.path == k)
                    && self.root_of(&k).map(|r| r.rank) == Some(root.rank)
                {
                    gone.push(k);
                }
            }
            files.extend(found.into_iter().map(|f| Job {
                root: root.clone(),
                path: f.path,
                loose: f.loose,
            }));
        }
        let outcomes: Vec<(Job, Outcome)> = files
            .into_iter()
            .map(|job| {
                let prior = self.prior(&job.path);
                let outcome = scan(&job.path, job.root.origin, job.loose, prior, &self.io);
                (job, outcome)
            })
            .collect();
        let mut report = ReloadReport::default();
        let mut changed = Vec::new();
        {
            let mut cat = self.catalog_mut();
            for path in &gone {
                cat.remove_path(path, &mut report, &mut changed);
            }
            for (job, outcome) in &outcomes {
                cat.apply(
                    &job.root,
                    &job.path,
                    outcome.clone(),
                    &mut report,
                    &mut changed,
                );
            }
            let resets = reset.slots(&cat);
            if let Reset::Folders(_) = reset {
                for r in &resets {
                    if !report.updated.contains(&r.slot.id) {
                        report.updated.push(r.slot.id.clone());
                    }
                }
            }
            changed.extend(resets);
            cat.rebuild_docs();
        }
        self.settle(changed, &mut report);
        for path in &gone {
            self.index.with(|i| i.remove(path));
        }
        for (job, outcome) in outcomes {
            match outcome {
                Outcome::Header {
                    header,
                    stamp,
                    how: How::Parsed | How::Hash,
                } => {
                    self.index
                        .with(|i| i.put(&job.path, &IndexEntry { stamp, header }));
                }
                Outcome::NotASkill => {
                    self.index.with(|i| i.remove(&job.path));
                }
                _ => {}
            }
        }
        report.io = self.io.counts().since(before);
        report.elapsed = started.elapsed();
        report
    }

    /// The catalogue's knowledge of `path`, else the index's.
    fn prior(&self, path: &Path) -> Option<Prior> {
        if let Some(p) = read(&self.catalog).prior(path) {
            return Some(p);
        }
        self.index.with(|i| i.get(path)).flatten().map(|e| Prior {
            stamp: e.stamp,
            header: e.header,
        })
    }

    /// Resets each changed version (Unloaded, or Failed if its source is
    /// broken) and loads again those that had been loaded.
    fn settle(&self, changed: Vec<Changed>, report: &mut ReloadReport) {
        let mut seen = BTreeSet::new();
        let mut reload: Vec<Arc<Slot>> = Vec::new();
        for Changed { slot, was_loaded } in changed {
            if !seen.insert(slot.id.clone()) {
                continue;
            }
            let mut st = lock(&slot.state);
            if st.life.state() != State::Unloaded {
                // Any state → Unloaded by reload is always allowed.
                let _ = st.life.apply(Hook::Reload, State::Unloaded, Duration::ZERO);
            }
            st.resolution = None;
            if let Some(error) = st.candidates.first().and_then(|c| c.error.clone()) {
                let _ = st.life.fail_load(error, Duration::ZERO);
            } else if was_loaded {
                reload.push(slot.clone());
            }
        }
        for slot in reload {
            let known = |f: &Failure| f.skill.as_deref() == Some(&slot.id);
            if self.ensure_loaded(&slot).is_err() && !report.failed.iter().any(known) {
                report.failed.extend(slot.failure());
            }
        }
    }

    /// Adds the built-in skills (at open).
    pub(super) fn add_builtins(&self) {
        let mut cat = self.catalog_mut();
        let mut changed = Vec::new();
        for candidate in builtin::candidates() {
            match candidate {
                Ok(c) => {
                    cat.attach(c, &mut changed);
                }
                Err(e) => tracing::error!("built-in skill does not load: {e}"),
            }
        }
        cat.rebuild_docs();
    }
}

/// Which versions a rescan resets besides those whose source changed.
pub(super) enum Reset {
    Changed,
    /// Every version that is not Unloaded.
    AllLoaded,
    /// Every version of this name.
    Name(String),
    /// Versions whose skill folder is one of these (a resource changed).
    Folders(Vec<PathBuf>),
}

impl Reset {
    fn slots(&self, cat: &super::catalog::Catalog) -> Vec<Changed> {
        if let Reset::Changed = self {
            return Vec::new();
        }
        let all = cat.names.values().flat_map(|v| v.ordered());
        let pick = |slot: &Arc<Slot>| -> Option<Changed> {
            let st = lock(&slot.state);
            let state = st.life.state();
            let c = st.candidates.first()?;
            let wanted = match self {
                Reset::Changed => false,
                Reset::AllLoaded => state != State::Unloaded,
                Reset::Name(n) => &slot.name == n,
                Reset::Folders(dirs) => {
                    c.path()
                        .and_then(Path::parent)
                        .is_some_and(|d| dirs.iter().any(|f| f == d))
                        && state != State::Unloaded
                }
            };
            wanted.then(|| Changed {
                slot: slot.clone(),
                was_loaded: state != State::Unloaded || matches!(self, Reset::Name(_)),
            })
        };
        all.filter_map(pick).collect()
    }
}
