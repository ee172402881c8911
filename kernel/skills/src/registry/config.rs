//! What the registry is told at open: where skills live, where its index
//! is, and how it watches. The daemon builds this from its `[skills]`
//! config; tests build it by hand. Nothing here touches the disk.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::Origin;
use crate::trust::{TrustPolicy, TrustSettings};

/// How a [`super::SkillRegistry`] is opened.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    /// The working directory: its `.skillkernel/skills` is searched first
    /// ([`Origin::Project`]). `None`: no project skills.
    pub working_dir: Option<PathBuf>,
    /// Directories of the `[skills] dirs` config, earlier ones shadowing
    /// later ones ([`Origin::Configured`]).
    pub dirs: Vec<PathBuf>,
    /// The user's directory ([`Origin::User`]); see [`default_user_dir`].
    pub user_dir: Option<PathBuf>,
    /// Whether the skills compiled into the binary are offered
    /// ([`Origin::Builtin`]).
    pub builtins: bool,
    /// The sled index (`<state_dir>/skills-index`); `None`: no index, every
    /// start parses every manifest.
    pub index_path: Option<PathBuf>,
    /// Whether to watch the skill directories and reload what changes.
    pub watch: bool,
    /// Changes are applied once the directories have been quiet this long.
    pub debounce: Duration,
    /// Directory levels searched below each root (a skill folder at
    /// `root/group/skill/` is at depth 2).
    pub max_depth: usize,
    /// Lifecycle transitions kept per skill version for `%skill info`.
    pub history_len: usize,
    /// Which skills may ask for more than the default ([`crate::trust`]).
    pub trust: TrustSettings,
}

impl RegistryConfig {
    /// The defaults: project skills of `working_dir`, the user's directory,
    /// built-ins, watching, no index.
    /// Trust as `[skills] trust` defaults to (`ask`), without a store: a
    /// skill that asks for more than the default cannot run until a store
    /// is set and it is trusted.
    pub fn new(working_dir: impl Into<PathBuf>) -> RegistryConfig {
        let working_dir = working_dir.into();
        RegistryConfig {
            trust: TrustSettings {
                policy: TrustPolicy::Ask,
                store: None,
                workspace: working_dir.clone(),
            },
            working_dir: Some(working_dir),
            dirs: Vec::new(),
            user_dir: default_user_dir(),
            builtins: true,
            index_path: None,
            watch: true,
            debounce: Duration::from_millis(100),
            max_depth: 4,
            history_len: 32,
        }
    }

    /// Only `dirs` (as configured directories), nothing else: no project,
    /// user or built-in skills, no index, no watcher; every skill trusted
    /// (`trust = "all"`: what the engine's own tests and benches run).
    pub fn only(dirs: impl IntoIterator<Item = PathBuf>) -> RegistryConfig {
        RegistryConfig {
            working_dir: None,
            dirs: dirs.into_iter().collect(),
            user_dir: None,
            builtins: false,
            watch: false,
            trust: TrustSettings {
                policy: TrustPolicy::All,
                store: None,
                workspace: PathBuf::new(),
            },
            ..RegistryConfig::new("")
        }
    }

    /// The directories searched, highest precedence first.
    pub fn roots(&self) -> Vec<Root> {
        let mut roots = Vec::new();
        let mut push = |dir: PathBuf, origin| {
            let dir = absolute(&dir);
            if !roots.iter().any(|r: &Root| r.dir == dir) {
                let rank = roots.len();
                roots.push(Root { dir, origin, rank });
            }
        };
        if let Some(wd) = &self.working_dir {
            push(wd.join(".skillkernel").join("skills"), Origin::Project);
        }
        for dir in &self.dirs {
            push(dir.clone(), Origin::Configured);
        }
        if let Some(user) = &self.user_dir {
            push(user.clone(), Origin::User);
        }
        roots
    }
}

/// `$XDG_DATA_HOME/skillkernel/skills`, else
/// `~/.local/share/skillkernel/skills`; `None` without either variable.
pub fn default_user_dir() -> Option<PathBuf> {
    user_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn user_dir_from(xdg_data_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let data = match xdg_data_home.filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg),
        None => PathBuf::from(home.filter(|v| !v.is_empty())?)
            .join(".local")
            .join("share"),
    };
    Some(data.join("skillkernel").join("skills"))
}

fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// A directory skills are discovered in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Absolute, not canonicalised (a symlinked root keeps its name).
    pub dir: PathBuf,
    pub origin: Origin,
    /// Position in precedence order: lower shadows higher.
    pub rank: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_come_in_precedence_order_without_duplicates() {
        let mut c = RegistryConfig::new("/work/nb");
        c.dirs = vec![
            "/opt/skills".into(),
            "/opt/skills".into(),
            "/srv/skills".into(),
        ];
        c.user_dir = Some("/home/ana/.local/share/skillkernel/skills".into());
        let roots: Vec<(String, Origin, usize)> = c
            .roots()
            .into_iter()
            .map(|r| (r.dir.display().to_string(), r.origin, r.rank))
            .collect();
        assert_eq!(
            roots,
            [
                (
                    "/work/nb/.skillkernel/skills".to_string(),
                    Origin::Project,
                    0
                ),
                ("/opt/skills".to_string(), Origin::Configured, 1),
                ("/srv/skills".to_string(), Origin::Configured, 2),
                (
                    "/home/ana/.local/share/skillkernel/skills".to_string(),
                    Origin::User,
                    3
                ),
            ]
        );
    }

    #[test]
    fn the_user_dir_follows_xdg_data_home_then_home() {
        let dir = |xdg: Option<&str>, home: Option<&str>| {
            user_dir_from(xdg.map(OsString::from), home.map(OsString::from))
        };
        assert_eq!(
            dir(Some("/x"), Some("/home/ana")),
            Some(PathBuf::from("/x/skillkernel/skills"))
        );
        assert_eq!(
            dir(Some(""), Some("/home/ana")),
            Some(PathBuf::from("/home/ana/.local/share/skillkernel/skills"))
        );
        assert_eq!(dir(None, None), None);
    }
}
