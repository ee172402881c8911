//! [`DenyList`]: what no sandboxed program may read, whatever its grants —
//! the home directory's secrets ([`SECRETS`]), the kernel's own files
//! (its connection file, Jupyter's runtime folder of connection files,
//! its state and log folders, its config files) and `[sandbox] deny`.
//!
//! The list goes into every policy (`SandboxPolicy::deny`), and the helper
//! hides what of it lies inside a grant (`helper/hidden.rs`). Here the
//! daemon refuses grants *at or inside* a denied path: a skill's
//! `permissions.read: [~/.aws/credentials]`, a cell's `[sandbox] read`.
//! Only `[sandbox.trust]` reopens one, for one skill and exactly the path
//! it names. This module must never let a grant reach a denied path
//! without that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::toolchains::SECRETS;
use crate::SandboxPolicy;

/// A grant that reaches a denied path.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{grant} is kept shut by the sandbox ({denied} is on its deny list: secrets and the kernel's own files), whatever is granted; {remedy}")]
pub struct KeptShut {
    pub grant: PathBuf,
    pub denied: PathBuf,
    pub remedy: String,
}

/// The daemon's deny list and the skills trusted past it.
#[derive(Debug, Clone, Default)]
pub struct DenyList {
    paths: Vec<PathBuf>,
    /// Folders of connection files (Jupyter's runtime folder): denied
    /// whole, or, when a run's workspace is in one, its `*.json` files.
    connection_folders: Vec<PathBuf>,
    /// Skill name → the denied paths it may read (resolved).
    trust: BTreeMap<String, Vec<PathBuf>>,
}

impl DenyList {
    /// The built-in secrets under `home`, the kernel's `own` files, its
    /// `connection_folders` and the configured `extra` paths (`~/` is
    /// `home`); `trust` from `[sandbox.trust]`.
    pub fn new(
        home: Option<&Path>,
        own: &[PathBuf],
        connection_folders: &[PathBuf],
        extra: &[PathBuf],
        trust: &BTreeMap<String, Vec<PathBuf>>,
    ) -> Self {
        let expand = |p: &PathBuf| expand_home(p, home);
        let mut paths: Vec<PathBuf> = Vec::new();
        let secrets = home
            .filter(|h| h.is_absolute() && h.parent().is_some())
            .into_iter()
            .flat_map(|h| SECRETS.iter().map(move |s| h.join(s)));
        for path in secrets
            .chain(own.iter().cloned())
            .chain(extra.iter().map(expand))
        {
            // Both the path as given and where it leads: a denied path
            // named through a link is denied where it really is.
            for p in [resolved(&path), path] {
                if !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
        let trust = trust
            .iter()
            .map(|(skill, list)| {
                let list = list.iter().map(|p| resolved(&expand(p))).collect();
                (skill.clone(), list)
            })
            .collect();
        let connection_folders = connection_folders.iter().map(|p| resolved(p)).collect();
        DenyList {
            paths,
            connection_folders,
            trust,
        }
    }

    /// The denied paths (connection folders last).
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut all = self.paths.clone();
        all.extend(self.connection_folders.iter().cloned());
        all
    }

    /// The denied paths for a run in `workspace`: a connection folder
    /// holding the workspace gives its connection files instead of itself.
    fn for_workspace(&self, workspace: Option<&Path>) -> Vec<PathBuf> {
        let workspace = workspace.map(resolved);
        let mut all = self.paths.clone();
        for folder in &self.connection_folders {
            if !workspace.as_ref().is_some_and(|w| w.starts_with(folder)) {
                all.push(folder.clone());
                continue;
            }
            let Ok(entries) = std::fs::read_dir(folder) else {
                continue;
            };
            all.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json")),
            );
        }
        all
    }

    /// Puts the list into `policy` and refuses a grant at or inside a
    /// denied path, unless `skill` is trusted with exactly that path.
    pub fn apply(&self, policy: &mut SandboxPolicy, skill: Option<&str>) -> Result<(), KeptShut> {
        policy.deny = self.for_workspace(policy.workspace.as_deref());
        let trusted = skill.and_then(|s| self.trust.get(s));
        let grants = policy
            .read
            .iter()
            .chain(&policy.write)
            .chain(policy.workspace.as_ref());
        for grant in grants {
            let real = resolved(grant);
            let Some(denied) = policy.deny.iter().find(|d| real.starts_with(d)) else {
                continue;
            };
            if trusted.is_some_and(|t| t.contains(&real)) {
                continue;
            }
            let remedy = match skill {
                Some(name) => format!(
                    "if skill `{name}` must read exactly it, add `{name:?} = [{:?}]` under \
                     `[sandbox.trust]` in the daemon's config (docs/security.md)",
                    grant.display().to_string()
                ),
                None => "cells and servers cannot reopen it: copy what the program needs \
                         into the working directory, or run it as a trusted skill"
                    .to_string(),
            };
            return Err(KeptShut {
                grant: grant.clone(),
                denied: denied.clone(),
                remedy,
            });
        }
        Ok(())
    }
}

/// `~/x` as `home/x`; anything else as given.
pub fn expand_home(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

/// `path` through its links as far as it exists, the rest as written.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(home: &Path) -> DenyList {
        let trust = BTreeMap::from([(
            "aws-report".to_string(),
            vec![PathBuf::from("~/.aws/config")],
        )]);
        DenyList::new(
            Some(home),
            &[home.join("work/kernel.json")],
            &[home.join("runtime")],
            &[PathBuf::from("~/private")],
            &trust,
        )
    }

    #[test]
    fn grants_at_or_inside_a_denied_path_are_refused_and_around_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::create_dir_all(home.join("work")).unwrap();
        std::os::unix::fs::symlink(home.join(".aws"), home.join("work/cloud")).unwrap();
        let deny = list(&home);
        let mut policy = SandboxPolicy::for_workspace(home.join("work"));
        // A folder holding denied paths is fine: the helper hides them.
        policy.read.push(home.clone());
        deny.apply(&mut policy, Some("other")).unwrap();
        assert!(policy.deny.contains(&home.join(".ssh")));
        assert!(policy.deny.contains(&home.join("work/kernel.json")));
        assert!(policy.deny.contains(&home.join("private")));
        for grant in [
            home.join(".aws/credentials"),
            home.join("private"),
            home.join("work/cloud/credentials"),
        ] {
            let mut p = SandboxPolicy::for_workspace(home.join("work"));
            p.read.push(grant.clone());
            let err = deny.apply(&mut p, Some("other")).unwrap_err();
            assert_eq!(err.grant, grant);
            assert!(err.to_string().contains("[sandbox.trust]"), "{err}");
        }
    }

    #[test]
    fn a_workspace_inside_the_connection_folder_keeps_all_but_its_connection_files() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().canonicalize().unwrap();
        let runtime = home.join("runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::write(runtime.join("kernel-1.json"), "{}").unwrap();
        std::fs::write(runtime.join("notes.txt"), "").unwrap();
        let deny = list(&home);
        let mut elsewhere = SandboxPolicy::for_workspace(home.join("work"));
        deny.apply(&mut elsewhere, None).unwrap();
        assert!(elsewhere.deny.contains(&runtime));
        let mut inside = SandboxPolicy::for_workspace(&runtime);
        deny.apply(&mut inside, None).unwrap();
        assert!(!inside.deny.contains(&runtime));
        assert!(inside.deny.contains(&runtime.join("kernel-1.json")));
        assert!(!inside.deny.contains(&runtime.join("notes.txt")));
    }

    #[test]
    fn a_trusted_skill_reopens_exactly_its_path_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        let deny = list(&home);
        let mut p = SandboxPolicy::for_workspace(&home);
        p.read.push(home.join(".aws/config"));
        deny.apply(&mut p, Some("aws-report")).unwrap();
        p.read.push(home.join(".aws/credentials"));
        assert!(deny.apply(&mut p, Some("aws-report")).is_err());
        let mut cell = SandboxPolicy::for_workspace(&home);
        cell.read.push(home.join(".aws/config"));
        let err = deny.apply(&mut cell, None).unwrap_err();
        assert!(err.to_string().contains("cannot reopen"), "{err}");
    }
}
