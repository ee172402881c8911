//! `[skills]`: where skills come from and how the registry behaves.
//!
//! It is the daemon's config section as is (read from TOML, changed on
//! reload) and what [`crate::KernelConfig::skills`] carries into the kernel.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SkillsConfig {
    /// Directories searched for skills, in order (after the project's).
    pub dirs: Vec<PathBuf>,
    /// Also search `<working directory>/.skillkernel/skills`.
    pub project: bool,
    /// The user's skill directory; unset: `$XDG_DATA_HOME/skillkernel/skills`
    /// (`~/.local/share/skillkernel/skills`).
    pub user_dir: Option<PathBuf>,
    /// Offer the skills compiled into the binary.
    pub builtin: bool,
    /// Watch the directories and reload a skill when its files change.
    pub watch: bool,
    /// Keep the discovery index in `<state_dir>/skills-index`, so a restart
    /// reads no unchanged manifest.
    pub index: bool,
    /// Skills (names) disabled at start.
    pub disabled: Vec<String>,
}

impl Default for SkillsConfig {
    fn default() -> Self {
        SkillsConfig {
            dirs: Vec::new(),
            project: true,
            user_dir: None,
            builtin: true,
            watch: true,
            index: true,
            disabled: Vec::new(),
        }
    }
}

impl SkillsConfig {
    /// The user's directory in force.
    pub fn user_dir(&self) -> Option<PathBuf> {
        self.user_dir.clone().or_else(default_user_dir)
    }
}

/// `$XDG_DATA_HOME/skillkernel/skills`, else `~/.local/share/skillkernel/skills`.
pub fn default_user_dir() -> Option<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".local/share"),
    };
    Some(data.join("skillkernel/skills"))
}
