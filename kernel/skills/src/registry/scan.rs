//! The scan of one manifest: as little I/O as proves what it holds.
//!
//! 1. `stat`: the same mtime and size as the prior knowledge (the
//!    catalogue's, else the index's) → its header, nothing read.
//! 2. Read and hash (blake3): the same content → its header; only the
//!    stamp is new (a touched file).
//! 3. Otherwise parse the header ([`format::load_header`]).
//!
//! A loose `*.yaml` that nothing knows is first checked with
//! [`format::detect`]; not a workflow → [`Outcome::NotASkill`]. Counters
//! in [`ScanStats`] let tests and `%skill info` prove how much was read.
//! This module never changes the catalogue or the index.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use super::index::Stamp;
use crate::format;
use crate::model::Origin;
use crate::{LoadError, SkillHeader};

/// What the registry already knew of a file.
#[derive(Debug, Clone)]
pub struct Prior {
    pub stamp: Stamp,
    pub header: SkillHeader,
}

/// How a scan learnt the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// mtime and size unchanged: nothing read.
    Stat,
    /// Read, and the hash matched: not parsed.
    Hash,
    /// Parsed.
    Parsed,
}

/// What a file turned out to hold.
#[derive(Debug, Clone)]
pub enum Outcome {
    Header {
        header: SkillHeader,
        stamp: Stamp,
        how: How,
    },
    /// It did not give a header; `prior` is what was known of it last.
    Broken {
        error: LoadError,
        prior: Option<Prior>,
    },
    /// Gone, or a loose YAML that is not a workflow.
    NotASkill,
}

/// How much I/O scans did, since the registry opened.
#[derive(Debug, Default)]
pub struct ScanStats {
    pub stats: AtomicU64,
    pub reads: AtomicU64,
    pub header_parses: AtomicU64,
    pub full_parses: AtomicU64,
}

/// How much file I/O the registry did (see [`SkillRegistry::io_counts`](super::SkillRegistry::io_counts)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScanCounts {
    /// Files stat'ed.
    pub stats: u64,
    /// Manifests read to hash them.
    pub reads: u64,
    /// Headers parsed ([`format::load_header`]).
    pub header_parses: u64,
    /// Full loads ([`format::load_file`] / `parse_str`).
    pub full_parses: u64,
}

impl ScanCounts {
    /// What was counted since `before`.
    pub fn since(self, before: ScanCounts) -> ScanCounts {
        ScanCounts {
            stats: self.stats - before.stats,
            reads: self.reads - before.reads,
            header_parses: self.header_parses - before.header_parses,
            full_parses: self.full_parses - before.full_parses,
        }
    }
}

impl ScanStats {
    pub fn counts(&self) -> ScanCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ScanCounts {
            stats: get(&self.stats),
            reads: get(&self.reads),
            header_parses: get(&self.header_parses),
            full_parses: get(&self.full_parses),
        }
    }

    pub fn count_full_parse(&self) {
        self.full_parses.fetch_add(1, Ordering::Relaxed);
    }
}

/// Scans `path` (from `origin`) against `prior`. `loose`: a YAML file that
/// is a skill only if it is a workflow. Blocks on file I/O.
pub fn scan(
    path: &Path,
    origin: Origin,
    loose: bool,
    prior: Option<Prior>,
    counts: &ScanStats,
) -> Outcome {
    counts.stats.fetch_add(1, Ordering::Relaxed);
    let Ok(meta) = std::fs::metadata(path) else {
        return Outcome::NotASkill;
    };
    if !meta.is_file() {
        return Outcome::NotASkill;
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let size = meta.len();
    if let Some(p) = &prior {
        if p.stamp.same_stat(mtime_ns, size) {
            return Outcome::Header {
                header: p.header.clone(),
                stamp: p.stamp,
                how: How::Stat,
            };
        }
    }
    if loose && format::detect(path).is_none() {
        return Outcome::NotASkill;
    }
    let broken = |error| Outcome::Broken {
        error,
        prior: prior.clone(),
    };
    let mut blake3 = [0; 32];
    if size <= format::MAX_MANIFEST_BYTES {
        counts.reads.fetch_add(1, Ordering::Relaxed);
        match std::fs::read(path) {
            Ok(bytes) => blake3 = *blake3::hash(&bytes).as_bytes(),
            Err(e) => {
                return broken(LoadError::new(
                    path,
                    format!("cannot read the file: {e}"),
                    "check that it exists and is readable",
                ))
            }
        }
        if let Some(p) = &prior {
            if p.stamp.blake3 == blake3 {
                return Outcome::Header {
                    header: p.header.clone(),
                    stamp: Stamp {
                        mtime_ns,
                        size,
                        blake3,
                    },
                    how: How::Hash,
                };
            }
        }
    }
    counts.header_parses.fetch_add(1, Ordering::Relaxed);
    match format::load_header(path, origin) {
        Ok(header) => Outcome::Header {
            header,
            stamp: Stamp {
                mtime_ns,
                size,
                blake3,
            },
            how: How::Parsed,
        },
        Err(error) => broken(error),
    }
}
