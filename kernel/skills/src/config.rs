//! `[skills]`: where skills come from and how the registry behaves.
//!
//! It is the daemon's config section as is (read from TOML, changed on
//! reload) and what the kernel's config carries into the engine.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::registry::{default_user_dir, RegistryConfig};
use super::trust::{TrustPolicy, TrustSettings};

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
    /// Which skills may ask for more than the default (a program, network,
    /// paths, environment): `ask` — those the user trusted (`%skill
    /// trust`); `all` — every skill; `builtin-only` — only built-ins.
    pub trust: TrustPolicy,
    /// `[skills.signatures]`: minisign signatures of installed skills.
    pub signatures: SignatureConfig,
}

/// `[skills.signatures]`: which authors' signatures `skill install`
/// checks, and what a good one is worth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignatureConfig {
    /// `require`: an install without a good signature from one of `keys`
    /// is refused; `warn` (default): installed, with a warning; `off`:
    /// signatures are not read.
    pub policy: SignaturePolicy,
    /// Trusted minisign public keys: the base64 line of a `minisign.pub`
    /// (`RW…`).
    pub keys: Vec<String>,
    /// A good signature from one of `keys` trusts the installed skill
    /// (workspace trust) without `%skill trust`.
    pub trust_signed: bool,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        SignatureConfig {
            policy: SignaturePolicy::Warn,
            keys: Vec::new(),
            trust_signed: true,
        }
    }
}

/// `[skills.signatures] policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignaturePolicy {
    Require,
    #[default]
    Warn,
    Off,
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
            trust: TrustPolicy::Ask,
            signatures: SignatureConfig::default(),
        }
    }
}

impl SkillsConfig {
    /// The registry's settings: these, rooted in `working_dir` (for the
    /// project's `.skillkernel/skills`), with the index at `index_path`
    /// when `index` is on and trust decisions in `trust_store`.
    pub fn registry_config(
        &self,
        working_dir: &Path,
        index_path: Option<PathBuf>,
        trust_store: Option<PathBuf>,
    ) -> RegistryConfig {
        RegistryConfig {
            trust: TrustSettings {
                policy: self.trust,
                store: trust_store,
                workspace: working_dir.to_path_buf(),
            },
            working_dir: self.project.then(|| working_dir.to_path_buf()),
            dirs: self.dirs.clone(),
            user_dir: self.user_dir.clone().or_else(default_user_dir),
            builtins: self.builtin,
            index_path: index_path.filter(|_| self.index),
            watch: self.watch,
            ..RegistryConfig::new(working_dir)
        }
    }
}
