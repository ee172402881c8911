//! The catalogue: every known skill version ([`Slot`]), the sources that
//! declare it ([`Candidate`]s, highest precedence first — the first is in
//! effect, the others are shadowed), the broken files, the disabled
//! versions, and the search documents.
//!
//! It lives behind the registry's `RwLock`; each slot's mutable part
//! (candidates, lifecycle) behind the slot's own mutex. Lock order is
//! always catalogue, then one slot: never a slot, then the catalogue, and
//! never two slots at once. This module holds the types and lookups (the
//! changes are in `apply`); it never does I/O.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use semver::Version;

use super::deps::{Catalogue, DepOffer, Resolution};
use super::index::Stamp;
use super::lifecycle::{Lifecycle, State};
use super::report::Failure;
use super::scan::Prior;
use super::search::SearchDoc;
use crate::model::Origin;
use crate::{LoadError, Skill, SkillHeader};
use skillkernel_stdx::lock;

/// Where a candidate's text is.
#[derive(Debug, Clone)]
pub enum Body {
    File {
        path: PathBuf,
        stamp: Stamp,
    },
    /// Compiled in; `path` is what errors name.
    Builtin {
        text: &'static str,
        path: PathBuf,
    },
    /// Defined by a `%%skill` cell, already parsed.
    Cell(Arc<Skill>),
}

/// One source of a skill version.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub header: SkillHeader,
    pub body: Body,
    /// The root's rank ([`Root::rank`]); ties between origins break by it.
    pub rank: usize,
    /// The file no longer gives a header; `header` is what it last said.
    pub error: Option<LoadError>,
}

impl Candidate {
    /// Precedence: origin, then root, then path.
    pub fn order(&self) -> (Origin, usize, Option<&Path>) {
        (self.header.source.origin, self.rank, self.path())
    }

    pub fn path(&self) -> Option<&Path> {
        match &self.body {
            Body::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// One skill version.
#[derive(Debug)]
pub struct Slot {
    pub name: String,
    pub version: Version,
    /// `name@version`.
    pub id: String,
    pub state: Mutex<SlotState>,
}

#[derive(Debug)]
pub struct SlotState {
    /// Highest precedence first; never empty while the slot is listed.
    pub candidates: Vec<Candidate>,
    pub life: Lifecycle,
    /// Set by init.
    pub resolution: Option<Resolution>,
}

impl Slot {
    pub fn new(header: &SkillHeader, history_len: usize) -> Slot {
        let id = format!("{}@{}", header.meta.name, header.meta.version);
        Slot {
            name: header.meta.name.clone(),
            version: header.meta.version.clone(),
            state: Mutex::new(SlotState {
                candidates: Vec::new(),
                life: Lifecycle::new(id.clone(), history_len),
                resolution: None,
            }),
            id,
        }
    }

    /// Why it is Failed, if it is.
    pub fn failure(&self) -> Option<Failure> {
        let st = lock(&self.state);
        let error = st
            .life
            .error
            .clone()
            .filter(|_| st.life.state() == State::Failed)?;
        Some(Failure {
            skill: Some(self.id.clone()),
            path: st.candidates.first()?.path().map(Path::to_path_buf),
            error,
            load_error: st.life.load_error.clone(),
        })
    }

    /// The in-effect header.
    pub fn header(&self) -> SkillHeader {
        lock(&self.state).candidates[0].header.clone()
    }
}

/// The versions of one name.
#[derive(Debug, Default)]
pub struct Versions {
    pub files: BTreeMap<Version, Arc<Slot>>,
    /// A `%%skill` cell's definition: preferred whenever it matches.
    pub cell: Option<Arc<Slot>>,
}

impl Versions {
    /// Slots in order of preference: the cell's, then highest first.
    pub fn ordered(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.cell.iter().chain(self.files.values().rev())
    }
}

/// Everything known.
#[derive(Debug, Default)]
pub struct Catalog {
    pub names: BTreeMap<String, Versions>,
    /// File candidates: manifest → the version it declares.
    pub by_path: HashMap<PathBuf, (String, Version)>,
    /// Files that never gave a header.
    pub broken: BTreeMap<PathBuf, LoadError>,
    /// `name@version` → reason.
    pub disabled: HashMap<String, String>,
    /// One per name, for its preferred version.
    pub docs: Vec<SearchDoc>,
    pub history_len: usize,
}

/// A slot whose in-effect source changed, and whether it had been loaded
/// (then the registry loads it again at once).
pub struct Changed {
    pub slot: Arc<Slot>,
    pub was_loaded: bool,
}

impl Catalog {
    pub fn slot(&self, name: &str, version: &Version) -> Option<&Arc<Slot>> {
        self.names.get(name)?.files.get(version)
    }

    /// `name@version`: the cell's definition if it is that version, else
    /// the files'.
    pub fn slot_for(&self, name: &str, version: &Version) -> Option<&Arc<Slot>> {
        let versions = self.names.get(name)?;
        match &versions.cell {
            Some(cell) if &cell.version == version => Some(cell),
            _ => versions.files.get(version),
        }
    }

    /// What the catalogue knows of `path`, for the scan.
    pub fn prior(&self, path: &Path) -> Option<Prior> {
        let (name, version) = self.by_path.get(path)?;
        let st = lock(&self.slot(name, version)?.state);
        let c = st.candidates.iter().find(|c| c.path() == Some(path))?;
        match &c.body {
            Body::File { stamp, .. } => Some(Prior {
                stamp: *stamp,
                header: c.header.clone(),
            }),
            _ => None,
        }
    }

    /// The file paths known under `dir` (broken ones included).
    pub fn paths_under(&self, dir: &Path) -> Vec<PathBuf> {
        let known = self.by_path.keys().chain(self.broken.keys());
        known.filter(|p| p.starts_with(dir)).cloned().collect()
    }

    /// The folder of the known folder-skill containing `path`, if any.
    pub fn skill_folder_of(&self, path: &Path) -> Option<PathBuf> {
        path.ancestors().skip(1).find_map(|dir| {
            super::discover::FOLDER_MANIFESTS
                .iter()
                .map(|m| dir.join(m))
                .find(|m| self.by_path.contains_key(m) || self.broken.contains_key(m))
                .map(|_| dir.to_path_buf())
        })
    }

    /// The slot `name` would select by default: the first enabled one in
    /// order of preference, else the first.
    pub fn preferred(&self, name: &str) -> Option<&Arc<Slot>> {
        let versions = self.names.get(name)?;
        let mut ordered = versions.ordered();
        let first = versions.ordered().next();
        ordered
            .find(|s| !self.disabled.contains_key(&s.id))
            .or(first)
    }

    pub fn rebuild_docs(&mut self) {
        self.docs = self
            .names
            .keys()
            .filter_map(|n| self.preferred(n))
            .map(|slot| SearchDoc::new(&slot.header()))
            .collect();
    }

    /// Every failure: broken files, and versions that are Failed.
    pub fn failures(&self) -> Vec<Failure> {
        let mut out: Vec<Failure> = self
            .broken
            .iter()
            .map(|(path, e)| Failure {
                skill: None,
                path: Some(path.clone()),
                error: e.clone().into(),
                load_error: Some(e.clone()),
            })
            .collect();
        let slots = self.names.values().flat_map(|v| v.ordered());
        out.extend(slots.filter_map(|slot| slot.failure()));
        out
    }
}

impl Changed {
    pub fn of(slot: &Arc<Slot>) -> Changed {
        let was_loaded = lock(&slot.state).life.state() != State::Unloaded;
        Changed {
            slot: slot.clone(),
            was_loaded,
        }
    }
}

impl Catalogue for Catalog {
    fn offers(&self, name: &str) -> Vec<DepOffer> {
        let Some(versions) = self.names.get(name) else {
            return Vec::new();
        };
        versions
            .ordered()
            .map(|slot| DepOffer {
                version: slot.version.clone(),
                disabled: self.disabled.get(&slot.id).cloned(),
                dependencies: slot.header().dependencies,
            })
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }
}
