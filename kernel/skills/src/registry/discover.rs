//! The walk: which files under a skill directory are skills.
//!
//! * A folder holding a manifest — `skill.yaml`, `skill.yml`, `skill.json`
//!   or `SKILL.md`, first found in that order — is one skill: the walk
//!   takes that manifest and does not descend further (the folder's other
//!   files and subfolders are the skill's own: templates, `scripts/`,
//!   `references/`).
//! * In any other folder, each `*.yaml` / `*.yml` file is a possible loose
//!   Skillrunner workflow ([`Found::loose`]); the scan decides, with
//!   [`format::detect`], unless the index already knows the file unchanged.
//! * The walk goes at most `max_depth` directory levels below the root,
//!   skips every hidden entry (a name starting with `.`), follows symbolic
//!   links to files and to directories (a linked skill folder is common),
//!   and visits each real directory once, so a link loop ends.
//! * Entries are visited in name order: results are deterministic.
//!
//! This module only lists; it never parses a manifest.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::format;
use crate::model::SkillFormat;

pub use crate::format::{is_folder_manifest, FOLDER_MANIFESTS};

/// A file the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// A `*.yaml` outside a skill folder: a workflow only if it has a
    /// top-level `phases`.
    pub loose: bool,
}

/// Whether `name` is hidden.
pub fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.'))
}

/// The skill files under `dir`, searching `depth` more levels below it.
/// A missing or unreadable directory yields nothing (logged at debug).
pub fn walk(dir: &Path, depth: usize) -> Vec<Found> {
    let mut found = Vec::new();
    if let Ok(meta) = std::fs::metadata(dir) {
        walk_into(dir, &meta, depth, &mut HashSet::new(), &mut found);
    }
    found
}

/// Walks `dir`, whose (link-followed) metadata is `meta`. Directories are
/// recognised by device and inode, so a link back to one already walked
/// ends there, without resolving every path.
fn walk_into(
    dir: &Path,
    meta: &std::fs::Metadata,
    depth: usize,
    visited: &mut HashSet<(u64, u64)>,
    found: &mut Vec<Found>,
) {
    if !visited.insert((meta.dev(), meta.ino())) {
        return;
    }
    let mut entries: Vec<(std::ffi::OsString, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| (e.file_name(), e.path()))
            .filter(|(name, _)| !is_hidden(name))
            .collect(),
        Err(e) => {
            tracing::debug!(dir = %dir.display(), "skill directory not read: {e}");
            return;
        }
    };
    entries.sort();
    for manifest in FOLDER_MANIFESTS {
        if let Some((_, path)) = entries.iter().find(|(n, _)| n == manifest) {
            if path.is_file() && is_folder_format(path) {
                found.push(Found {
                    path: path.clone(),
                    loose: false,
                });
                return;
            }
        }
    }
    for (name, path) in entries {
        // `metadata` follows links; a dangling link is skipped.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth > 0 {
                walk_into(&path, &meta, depth - 1, visited, found);
            }
        } else if meta.is_file() && is_yaml(&name) {
            found.push(Found { path, loose: true });
        }
    }
}

fn is_folder_format(path: &Path) -> bool {
    matches!(
        format::detect(path),
        Some(SkillFormat::Native | SkillFormat::AgentSkills)
    )
}

fn is_yaml(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "x: 1\n").unwrap();
    }

    fn rel(root: &Path, found: &[Found]) -> Vec<String> {
        found
            .iter()
            .map(|f| {
                let r = f.path.strip_prefix(root).unwrap().display().to_string();
                if f.loose {
                    format!("{r} (loose)")
                } else {
                    r
                }
            })
            .collect()
    }

    #[test]
    fn a_folder_with_a_manifest_is_one_skill_and_is_not_descended() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "summarize/skill.yaml");
        touch(t.path(), "summarize/SKILL.md");
        touch(t.path(), "summarize/extra.yaml");
        touch(t.path(), "summarize/nested/skill.yaml");
        touch(t.path(), "agent/SKILL.md");
        touch(t.path(), "agent/references/notes.yaml");
        touch(t.path(), "flows/release.yaml");
        touch(t.path(), "flows/readme.txt");
        touch(t.path(), "top.yml");
        assert_eq!(
            rel(t.path(), &walk(t.path(), 4)),
            [
                "agent/SKILL.md",
                "flows/release.yaml (loose)",
                "summarize/skill.yaml",
                "top.yml (loose)"
            ]
        );
    }

    #[test]
    fn hidden_entries_are_skipped_and_depth_is_bounded() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), ".git/skill.yaml");
        touch(t.path(), "a/.hidden/skill.yaml");
        touch(t.path(), "a/b/skill.yaml");
        touch(t.path(), "a/b2/c/d/skill.yaml");
        assert_eq!(rel(t.path(), &walk(t.path(), 2)), ["a/b/skill.yaml"]);
        assert_eq!(
            rel(t.path(), &walk(t.path(), 4)),
            ["a/b/skill.yaml", "a/b2/c/d/skill.yaml"]
        );
    }

    #[test]
    fn symlinks_are_followed_and_loops_end() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        touch(elsewhere.path(), "linked/skill.yaml");
        std::os::unix::fs::symlink(elsewhere.path().join("linked"), t.path().join("linked"))
            .unwrap();
        fs::create_dir_all(t.path().join("group")).unwrap();
        std::os::unix::fs::symlink(t.path(), t.path().join("group/loop")).unwrap();
        std::os::unix::fs::symlink(t.path().join("gone"), t.path().join("dangling")).unwrap();
        assert_eq!(rel(t.path(), &walk(t.path(), 8)), ["linked/skill.yaml"]);
    }

    #[test]
    fn a_missing_directory_yields_nothing() {
        assert!(walk(Path::new("/nonexistent/skillkernel/skills"), 4).is_empty());
    }
}
