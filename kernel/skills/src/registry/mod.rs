//! The skill registry: discovery, the persisted index, search, versions,
//! dependencies, lifecycle and hot reload.
//!
//! | module      | what                                                        |
//! |-------------|-------------------------------------------------------------|
//! | `config`    | [`RegistryConfig`]: the roots, the index path, watching      |
//! | `discover`  | the walk: which files are skills                             |
//! | `scan`      | one manifest: stat, else hash, else parse the header         |
//! | `index`     | the sled index of headers by path, mtime, size, blake3       |
//! | `catalog`   | versions, their sources by precedence, shadowing             |
//! | `apply`     | changes to the catalogue: scan outcomes, sources, cells      |
//! | `query`     | list, search, get, info, failures                            |
//! | `select`    | `name@requirement` → one version                             |
//! | `search`    | the query language and ranking                               |
//! | `deps`      | dependency resolution, cycles, conflicts                     |
//! | `lifecycle` | the state machine and its history                            |
//! | `activate`  | load, init, activate, runs (`ExecutionGuard`)                |
//! | `operate`   | enable, disable, unload, `%%skill` cells                     |
//! | `reload`    | rescans: discover, reload, reload_all, watcher changes       |
//! | `watch`     | the debounced `notify` watcher                               |
//! | `builtin`   | the skills compiled into the binary                          |
//! | `trusted`   | workspace trust as listings show it (blocking)               |
//!
//! Workspace trust ([`crate::trust`]) is checked by `begin_execution`: a
//! run of a skill that asks for more than the default and is not trusted
//! fails with `TRUST_REQUIRED` and leaves the skill Active.
//!
//! # Precedence
//!
//! Roots are searched in this order, and where two sources declare the
//! same name and version the earlier shadows the later (listed with
//! `shadowed_by`): the working directory's `.skillkernel/skills`
//! (project), the configured directories in order, the user's directory,
//! the built-ins. A `%%skill` cell's definition ([`SkillRegistry::register_inline`])
//! is preferred over every version of its name whenever it matches the
//! request (`get("name")` is the cell's); `name@1.2` for a version the
//! cell does not have still reaches the others. Otherwise `get("name")`
//! is the highest enabled version.
//!
//! # Laziness and the index
//!
//! Discovery keeps only [`SkillHeader`](crate::SkillHeader)s; a skill is parsed in full on
//! first use ([`SkillRegistry::activate`]) and again after its files
//! change. With an index, a restart stats each manifest and reads none
//! that is unchanged.
//!
//! # Broken skills and hot reload
//!
//! A file that does not load is recorded with its error
//! ([`SkillRegistry::failures`]) and never stops the others. When an edit
//! breaks a skill that loaded before, that version becomes Failed with the
//! new error, under the name and version the file last declared: the last
//! good version is **not** kept usable, so what runs is always what is on
//! disk and the user sees the error at once (`name@OTHER` versions stay
//! usable). A run already in progress finishes on the `Arc<Skill>` it
//! holds.
//!
//! # Discovery
//!
//! Under each root, a folder holding `skill.yaml`, `skill.yml`,
//! `skill.json` or `SKILL.md` (first found in that order) is one skill and
//! is not descended into; elsewhere each `*.yaml` / `*.yml` with a
//! top-level `phases` is a loose Skillrunner workflow. The walk goes
//! [`RegistryConfig::max_depth`] levels below the root (default 4), skips
//! hidden entries, follows symbolic links (each real directory once). A
//! path under two roots belongs to the first.
//!
//! # API
//!
//! | call | does | cost |
//! |------|------|------|
//! | [`SkillRegistry::open`] | index, built-ins, discovery, watcher | blocking |
//! | `list` / `names` / `search` / `get` / `info` / `failures` | read | cheap, in memory |
//! | [`SkillRegistry::load`] | parse + resolve dependencies (Ready) | blocking on first use |
//! | [`SkillRegistry::activate`] | … then Active, returns `Arc<Skill>` | blocking on first use |
//! | [`SkillRegistry::begin_execution`] | … then Executing until the guard drops | blocking on first use |
//! | [`SkillRegistry::trust_of`] | where a listed skill stands with workspace trust | blocking (parse, digest) |
//! | `enable` / `disable` | selectable or not, persisted | blocking (index write) |
//! | `unload` | drop the parsed skill, keep the header | cheap |
//! | `register_inline` / `remove_inline` | `%%skill` cells | cheap |
//! | `discover` / `reload` / `reload_all` | rescans, return a [`ReloadReport`] | blocking |
//! | [`SkillRegistry::subscribe`] | the watcher's reports | cheap |
//!
//! # Threads
//!
//! `SkillRegistry` is shared as `Arc` (`open` returns one;
//! `begin_execution` and `reload_all` take `self: &Arc<Self>`) with
//! interior locking; every other method takes `&self`. The reads are in
//! memory and cheap. Methods marked **blocking** do file I/O (parse a
//! manifest, walk directories, write the index): from async code call
//! them in `tokio::task::spawn_blocking`. An [`ExecutionGuard`] is `Send`
//! and may be held across `.await`s.

mod activate;
mod apply;
mod builtin;
mod catalog;
pub mod config;
mod deps;
mod discover;
mod index;
pub mod lifecycle;
mod operate;
mod query;
mod reload;
pub mod report;
mod scan;
mod search;
mod select;
#[cfg(test)]
pub(crate) mod tests;
mod trusted;
mod watch;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use activate::ExecutionGuard;
pub use builtin::BUILTINS;
pub use config::{default_user_dir, RegistryConfig, Root};
pub use discover::FOLDER_MANIFESTS;
pub use lifecycle::{Hook, LifecycleError, State, Transition};
pub use report::{Failure, ReloadReport, SearchHit, SkillEntry, SkillInfo};
pub use scan::ScanCounts;
pub use search::Query;
pub use select::SkillSpec;

use catalog::{Catalog, Slot};
use index::IndexHandle;
use scan::ScanStats;
use select::{pick, Offer};

use crate::trust::Trust;
use crate::SkillError;

/// The registry of every skill this kernel can run. See the module docs.
pub struct SkillRegistry {
    config: RegistryConfig,
    roots: Vec<Root>,
    catalog: RwLock<Catalog>,
    index: IndexHandle,
    io: ScanStats,
    /// Serialises inits, so that one skill is initialised once at a time
    /// without holding its slot while its dependencies load.
    init_lock: Mutex<()>,
    /// Serialises rescans.
    rescan_lock: Mutex<()>,
    watcher: Mutex<Option<watch::Watcher>>,
    reports: tokio::sync::broadcast::Sender<Arc<ReloadReport>>,
    /// Bumped whenever the catalog is changed (reload, enable, disable,
    /// load, unload): what MCP sessions turn into list-changed notices.
    changes: tokio::sync::watch::Sender<u64>,
    /// Which skills may ask for more than the default; checked by
    /// [`SkillRegistry::begin_execution`].
    trust: Trust,
}

fn read(c: &RwLock<Catalog>) -> RwLockReadGuard<'_, Catalog> {
    c.read().unwrap_or_else(|p| p.into_inner())
}

fn write(c: &RwLock<Catalog>) -> RwLockWriteGuard<'_, Catalog> {
    c.write().unwrap_or_else(|p| p.into_inner())
}

impl SkillRegistry {
    /// Opens the index, adds the built-ins, discovers every root and (if
    /// configured) starts watching them. Never fails: an unusable index or
    /// an unwatchable directory is logged and the registry carries on
    /// without. Returns the first discovery's report. **Blocking.**
    pub fn open(config: RegistryConfig) -> (Arc<SkillRegistry>, ReloadReport) {
        let index = IndexHandle::open(config.index_path.as_deref());
        let disabled = index.with(|i| i.disabled()).unwrap_or_default();
        let catalog = Catalog {
            disabled: disabled.into_iter().collect(),
            history_len: config.history_len,
            ..Catalog::default()
        };
        let registry = Arc::new(SkillRegistry {
            trust: Trust::new(config.trust.clone()),
            roots: config.roots(),
            config,
            catalog: RwLock::new(catalog),
            index,
            io: ScanStats::default(),
            init_lock: Mutex::new(()),
            rescan_lock: Mutex::new(()),
            watcher: Mutex::new(None),
            reports: tokio::sync::broadcast::channel(16).0,
            changes: tokio::sync::watch::channel(0).0,
        });
        if registry.config.builtins {
            registry.add_builtins();
        }
        let report = registry.discover();
        if registry.config.watch {
            registry.sync_watcher();
        }
        (registry, report)
    }

    /// The catalog, to change it: readers of [`SkillRegistry::changes`]
    /// are told, and see the change once the guard is dropped.
    fn catalog_mut(&self) -> RwLockWriteGuard<'_, Catalog> {
        let guard = write(&self.catalog);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        guard
    }

    /// Ticks whenever the catalog changes (a spurious tick is possible).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Workspace trust: where skills stand, and the user's decisions.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The directories searched, highest precedence first.
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// The slot `spec` selects.
    fn select(&self, spec: &str) -> Result<Arc<Slot>, SkillError> {
        let spec = SkillSpec::parse(spec)?;
        let cat = read(&self.catalog);
        let slots: Vec<&Arc<Slot>> = cat
            .names
            .get(&spec.name)
            .map(|v| v.ordered().collect())
            .unwrap_or_default();
        let offers: Vec<Offer> = slots
            .iter()
            .map(|s| Offer {
                version: &s.version,
                disabled: cat.disabled.get(&s.id).map(String::as_str),
            })
            .collect();
        let i = pick(&spec, &offers, cat.names.keys().map(String::as_str))?;
        Ok(slots[i].clone())
    }

    /// The root a path belongs to: the first (by precedence) containing it.
    fn root_of(&self, path: &Path) -> Option<&Root> {
        self.roots.iter().find(|r| path.starts_with(&r.dir))
    }
}
