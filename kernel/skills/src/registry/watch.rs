//! Hot reload: a `notify` watcher on the skill directories, debounced.
//!
//! Events are collected until the directories have been quiet for the
//! configured debounce (at most ten debounces in a burst), then the
//! changed paths go to the registry in one batch, which rescans only the
//! folders they touch. The watcher thread holds the registry weakly: it
//! ends when the registry is dropped (the notify watcher with it, which
//! closes the channel). A root that does not exist yet is watched once it
//! does, at the next `reload_all`. Never fatal: a directory that cannot be
//! watched is logged and skipped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher as _};

use super::config::Root;
use super::discover::{is_hidden, FOLDER_MANIFESTS};
use super::reload::Reset;
use super::{read, ReloadReport, SkillRegistry};
use skillkernel_stdx::lock;

/// The live watcher and what it watches.
pub struct Watcher {
    inner: notify::RecommendedWatcher,
    watched: Vec<PathBuf>,
}

type Events = Receiver<notify::Result<notify::Event>>;

impl SkillRegistry {
    /// Starts the watcher if it is not running and watches every root that
    /// exists and is not watched yet.
    pub(super) fn sync_watcher(self: &Arc<Self>) {
        let mut slot = lock(&self.watcher);
        if slot.is_none() {
            let (tx, rx) = channel();
            let inner = match notify::recommended_watcher(tx) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("cannot watch the skill directories ({e}); use `%skill reload` after changes");
                    return;
                }
            };
            let registry = Arc::downgrade(self);
            let debounce = self.config.debounce;
            let spawned = std::thread::Builder::new()
                .name("skill-watcher".into())
                .spawn(move || run(rx, debounce, registry));
            if let Err(e) = spawned {
                tracing::warn!("cannot start the skill watcher thread ({e}); use `%skill reload` after changes");
                return;
            }
            *slot = Some(Watcher {
                inner,
                watched: Vec::new(),
            });
        }
        let Some(w) = slot.as_mut() else { return };
        for root in &self.roots {
            if w.watched.contains(&root.dir) || !root.dir.is_dir() {
                continue;
            }
            match w.inner.watch(&root.dir, RecursiveMode::Recursive) {
                Ok(()) => w.watched.push(root.dir.clone()),
                Err(e) => {
                    tracing::warn!(dir = %root.dir.display(), "cannot watch skill directory: {e}")
                }
            }
        }
        self.trust.set_watched(w.watched.clone());
    }

    /// Applies what the watcher saw change under `paths`, and publishes the
    /// report. **Blocking.**
    pub(super) fn apply_changes(&self, paths: Vec<PathBuf>) -> ReloadReport {
        // Before anything is filtered out: a hidden file is part of a
        // skill's digest too.
        if paths.iter().any(|p| p.as_os_str() == FORGET_DIGESTS) {
            self.trust.forget_all();
        }
        if paths.iter().any(|p| p.as_os_str() == "/") {
            // Events were lost: as `reload_all`, every digest goes and
            // every root is scanned again, every loaded skill re-read.
            self.trust.forget_all();
            return self.publish(self.rescan_roots(Reset::AllLoaded));
        }
        self.trust.forget(&paths);
        let mut scopes: BTreeSet<(usize, PathBuf)> = BTreeSet::new();
        let mut touched: Vec<PathBuf> = Vec::new();
        {
            let cat = read(&self.catalog);
            for p in paths {
                let Some(root) = self.root_of(&p) else {
                    continue;
                };
                let rel = p.strip_prefix(&root.dir).unwrap_or(&p);
                if rel.components().any(|c| is_hidden(c.as_os_str())) {
                    continue;
                }
                let was_dir = !p.exists() && cat.paths_under(&p).iter().any(|k| k != &p);
                let mut dir = if p.is_dir() || was_dir {
                    p.clone()
                } else {
                    p.parent().unwrap_or(&p).to_path_buf()
                };
                if let Some(folder) = cat.skill_folder_of(&p) {
                    if !FOLDER_MANIFESTS.iter().any(|m| p == folder.join(m)) {
                        touched.push(folder.clone()); // a template or resource of the skill
                    }
                    dir = folder;
                }
                if !dir.starts_with(&root.dir) {
                    dir = root.dir.clone();
                }
                scopes.insert((root.rank, dir));
            }
        }
        let scopes: Vec<(Root, PathBuf)> = scopes
            .iter()
            .filter(|(_, d)| !scopes.iter().any(|(_, o)| o != d && d.starts_with(o)))
            .filter_map(|(rank, d)| Some((self.roots.get(*rank)?.clone(), d.clone())))
            .collect();
        self.publish(self.rescan(scopes, Vec::new(), Reset::Folders(touched)))
    }

    /// Logs and sends what the watcher's changes did.
    fn publish(&self, report: ReloadReport) -> ReloadReport {
        if !report.is_quiet() {
            tracing::info!(target: "skillkernel::skills", "skills changed on disk: {report}");
        }
        let _ = self.reports.send(Arc::new(report.clone()));
        report
    }

    /// The directories being watched.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        lock(&self.watcher)
            .as_ref()
            .map(|w| w.watched.clone())
            .unwrap_or_default()
    }
}

/// The watcher thread: batches events, hands them to the registry.
fn run(events: Events, debounce: Duration, registry: Weak<SkillRegistry>) {
    while let Some(batch) = next_batch(&events, debounce) {
        let Some(registry) = registry.upgrade() else {
            return;
        };
        if !batch.is_empty() {
            registry.apply_changes(batch);
        }
    }
}

/// The paths of the next burst of events, once quiet for `debounce`;
/// `None` when the watcher is gone.
fn next_batch(events: &Events, debounce: Duration) -> Option<Vec<PathBuf>> {
    let mut paths = Vec::new();
    add(&mut paths, events.recv().ok()?);
    let give_up = Instant::now() + debounce * 10;
    loop {
        let wait = debounce.min(give_up.saturating_duration_since(Instant::now()));
        match events.recv_timeout(wait) {
            Ok(event) => add(&mut paths, event),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= give_up {
            break;
        }
    }
    paths.sort();
    paths.dedup();
    Some(paths)
}

/// A batch entry that only drops every cached trust digest.
const FORGET_DIGESTS: &str = "/.skillkernel-forget-digests";

fn add(paths: &mut Vec<PathBuf>, event: notify::Result<notify::Event>) {
    match event {
        // Events were lost (a queue overflow): anything may have changed,
        // so `/` — which every cached digest lies under — goes in the batch.
        Ok(e) if e.need_rescan() => paths.push(PathBuf::from("/")),
        Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
        Ok(e) => paths.extend(e.paths),
        // A watch that failed (inotify's limit): what it would have seen is
        // unseen, so cached digests go — without a rescan each time.
        Err(e) => {
            tracing::debug!("skill watcher: {e}");
            paths.push(PathBuf::from(FORGET_DIGESTS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_events_is_one_batch_once_quiet() {
        let (tx, rx) = channel();
        let event = |p: &str| {
            Ok(
                notify::Event::new(EventKind::Modify(notify::event::ModifyKind::Any))
                    .add_path(p.into()),
            )
        };
        tx.send(event("/s/a/skill.yaml")).unwrap();
        tx.send(event("/s/a/skill.yaml")).unwrap();
        tx.send(Ok(notify::Event::new(EventKind::Access(
            notify::event::AccessKind::Any,
        ))
        .add_path("/s/ignored".into())))
            .unwrap();
        tx.send(event("/s/b/skill.yaml")).unwrap();
        let batch = next_batch(&rx, Duration::from_millis(20)).unwrap();
        assert_eq!(
            batch,
            [
                PathBuf::from("/s/a/skill.yaml"),
                PathBuf::from("/s/b/skill.yaml")
            ]
        );
        drop(tx);
        assert_eq!(next_batch(&rx, Duration::from_millis(20)), None);
    }
}
