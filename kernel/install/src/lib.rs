//! Installing shared skills: `skill install SOURCE`, `update`, `remove`,
//! `list --installed`.
//!
//! A source ([`source`]) — a git repository (a ref, a subfolder), an
//! archive over HTTP(S) or on disk, a local folder — is fetched
//! ([`fetch`]) into a hidden staging folder inside the user's skill
//! directory, unpacked safely ([`unpack`]), checked (it must hold one
//! skill that loads), digested, its minisign signature checked
//! ([`signature`]), and only then moved into place with one `rename`; the
//! [`lock`] file records source, resolved commit or URL, and digest.
//! Whatever fails, the staging folder goes and nothing half-installed is
//! left.
//!
//! This crate never runs a skill, never writes outside the user's skill
//! directory and never records trust: trusting a skill a configured key
//! signed (`[skills.signatures] trust_signed`) is the kernel's, through
//! the registry's `Trust::grant`, as any other trust decision.

pub mod fetch;
pub mod lock;
pub mod signature;
pub mod source;
pub mod unpack;

use std::path::{Path, PathBuf};

use skillkernel_skills::config::{SignatureConfig, SignaturePolicy};
use skillkernel_skills::format::{self, FOLDER_MANIFESTS};
use skillkernel_skills::model::Origin;
use skillkernel_skills::trust::digest;

pub use lock::{Lock, LockEntry};
pub use signature::SignatureCheck;
pub use source::Source;

/// An install that did not happen, with what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InstallError {
    #[error("cannot install from {source_text}: {reason}")]
    BadSource { source_text: String, reason: String },
    #[error("refused to install from {source_text}: {reason}; nothing was installed")]
    Unsafe { source_text: String, reason: String },
    #[error("cannot fetch {source_text}: {reason}; {remedy}")]
    Fetch {
        source_text: String,
        reason: String,
        remedy: String,
    },
    #[error("the ref `{git_ref}` does not resolve in {url}; check the branch, tag or commit name")]
    BadRef { url: String, git_ref: String },
    #[error("{0}")]
    NotASkill(String),
    #[error("`{name}` is already installed at {path}; `skillctl skill update {name}` fetches it again, `skillctl skill remove {name}` removes it")]
    Exists { name: String, path: PathBuf },
    #[error(
        "{path} already exists and was not installed with `skill install`; move or remove it first"
    )]
    Occupied { name: String, path: PathBuf },
    #[error("`{0}` is not an installed skill; `skillctl skill list --installed` shows what is")]
    NotInstalled(String),
    #[error("refused: {check}; [skills.signatures] policy is `require` — sign the skill with a key in [skills.signatures] keys, or change the policy")]
    Signature { check: String },
    #[error("the lock file {path} cannot be used: {reason}; undo the edit, or remove the file and install the skills again")]
    Lock { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("the install failed: {0}; this is a bug, please report it with the log")]
    Internal(String),
}

impl InstallError {
    pub(crate) fn bad_source(source: &str, reason: impl Into<String>) -> Self {
        InstallError::BadSource {
            source_text: source.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsafe_source(source: &str, reason: impl Into<String>) -> Self {
        InstallError::Unsafe {
            source_text: source.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        InstallError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    pub source: String,
    pub git_ref: Option<String>,
    /// The skill's folder inside the source.
    pub subdir: Option<String>,
    /// Where a relative path is taken (the kernel's working directory);
    /// `None`: the process's.
    pub base: Option<PathBuf>,
}

/// An installed (or updated) skill.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The folder's name in the user's skill directory (the skill's name).
    pub name: String,
    pub entry: LockEntry,
    pub path: PathBuf,
    pub signature: SignatureCheck,
    /// The digest it had before, for an update.
    pub previous_digest: Option<String>,
}

/// An installed skill as `list --installed` shows it.
#[derive(Debug, Clone)]
pub struct InstalledStatus {
    pub name: String,
    pub entry: LockEntry,
    /// `ok`, `modified` (its files differ from the digest installed) or
    /// `missing` (its folder is gone).
    pub state: &'static str,
}

/// Installs into one user skill directory.
pub struct Installer {
    user_dir: PathBuf,
    signatures: SignatureConfig,
}

impl Installer {
    /// Into `user_dir`; signatures as `signatures` says.
    pub fn new(user_dir: PathBuf, signatures: SignatureConfig) -> Self {
        Installer {
            user_dir,
            signatures,
        }
    }

    pub fn user_dir(&self) -> &Path {
        &self.user_dir
    }

    fn lock(&self) -> Lock {
        Lock::new(&self.user_dir)
    }

    /// Installs `req`'s skill; refused when one of its name is installed.
    pub async fn install(&self, req: &InstallRequest) -> Result<Installed, InstallError> {
        let source = match &req.base {
            Some(base) => Source::parse_in(&req.source, req.git_ref.as_deref(), base)?,
            None => Source::parse(&req.source, req.git_ref.as_deref())?,
        };
        self.put(source, req.subdir.clone(), None).await
    }

    /// Fetches installed skill `name` again from its recorded source and
    /// replaces it (even when the source did not change).
    pub async fn update(&self, name: &str) -> Result<Installed, InstallError> {
        let entries = self.lock().read()?;
        let entry = entries
            .get(name)
            .ok_or_else(|| InstallError::NotInstalled(name.to_owned()))?;
        self.put(entry.source.clone(), entry.subdir.clone(), Some(name))
            .await
    }

    /// Removes installed skill `name`: its folder and its lock entry.
    pub fn remove(&self, name: &str) -> Result<LockEntry, InstallError> {
        let lock = self.lock();
        let entry = lock
            .read()?
            .remove(name)
            .ok_or_else(|| InstallError::NotInstalled(name.to_owned()))?;
        let path = self.user_dir.join(name);
        if path.exists() {
            // Moved aside first: the watcher sees one removal.
            let aside = self
                .user_dir
                .join(format!(".removing-{name}-{}", std::process::id()));
            std::fs::rename(&path, &aside).map_err(|e| InstallError::io(&path, e))?;
            std::fs::remove_dir_all(&aside).map_err(|e| InstallError::io(&aside, e))?;
        }
        lock.update(|s| s.remove(name))?;
        Ok(entry)
    }

    /// The names of the installed skills (the lock file's entries).
    pub fn installed_names(&self) -> Result<Vec<String>, InstallError> {
        Ok(self.lock().read()?.into_keys().collect())
    }

    /// Every installed skill and whether its files are as installed.
    pub fn list(&self) -> Result<Vec<InstalledStatus>, InstallError> {
        Ok(self
            .lock()
            .read()?
            .into_iter()
            .map(|(name, entry)| {
                let path = self.user_dir.join(&name);
                let state = if !path.is_dir() {
                    "missing"
                } else {
                    match digest::manifest(&path) {
                        Ok(m) if m.digest() == entry.digest => "ok",
                        _ => "modified",
                    }
                };
                InstalledStatus { name, entry, state }
            })
            .collect())
    }

    /// Fetches `source` into a staging folder, then checks and places it
    /// off the async runtime (digesting, verifying and moving a skill of
    /// up to 256 MiB is blocking work).
    async fn put(
        &self,
        source: Source,
        subdir: Option<String>,
        replacing: Option<&str>,
    ) -> Result<Installed, InstallError> {
        std::fs::create_dir_all(&self.user_dir).map_err(|e| InstallError::io(&self.user_dir, e))?;
        let staging = Staging::new(&self.user_dir)?;
        let resolved = fetch::fetch(&source, &staging.path.join("fetched")).await?;
        let (user_dir, signatures) = (self.user_dir.clone(), self.signatures.clone());
        let replacing = replacing.map(str::to_owned);
        fetch::blocking(move || {
            let installer = Installer {
                user_dir,
                signatures,
            };
            installer.place(staging, source, subdir, resolved, replacing.as_deref())
        })
        .await
    }

    /// Checks what `staging` fetched and moves it into place; `staging`
    /// goes when this returns, whatever happened. **Blocking.**
    fn place(
        &self,
        staging: Staging,
        source: Source,
        subdir: Option<String>,
        resolved: String,
        replacing: Option<&str>,
    ) -> Result<Installed, InstallError> {
        let lock = self.lock();
        let entries = lock.read()?;
        let fetched = staging.path.join("fetched");
        let root = match &subdir {
            Some(s) => fetched.join(source::checked_subdir(s)?),
            None => fetched.clone(),
        };
        let root = skill_folder(&root, &source)?;
        // The links of what is moved into place, checked against it alone
        // (a link fine inside the whole source may leave the subfolder).
        unpack::check_links(&source.display(), &root)?;
        let manifest = format::folder_manifest(&root).ok_or_else(|| {
            InstallError::NotASkill(format!("no skill manifest in {}", source.display()))
        })?;
        let skill = format::load_file(&manifest, Origin::User).map_err(|e| {
            InstallError::NotASkill(format!(
                "the skill from {} does not load: {e}",
                source.display()
            ))
        })?;
        let name = skill.meta.name.clone();
        if let Some(old) = replacing {
            if old != name {
                return Err(InstallError::NotASkill(format!(
                    "the source now holds `{name}`, not `{old}`; remove `{old}` and install it anew"
                )));
            }
        }
        let digest_manifest = digest::manifest(&root).map_err(|e| InstallError::Io {
            path: root.clone(),
            reason: e.reason,
        })?;
        let digest = digest_manifest.digest();
        let check = signature::check(&root, &digest_manifest.text(), &self.signatures);
        match (&check, self.signatures.policy) {
            (SignatureCheck::Verified { .. }, _) | (_, SignaturePolicy::Off) => {}
            (_, SignaturePolicy::Require) => {
                return Err(InstallError::Signature {
                    check: check.describe(),
                })
            }
            (_, SignaturePolicy::Warn) => {
                tracing::warn!(skill = %name, source = %source.display(), "installing {}", check.describe())
            }
        }
        let target = self.user_dir.join(&name);
        let previous = entries.get(&name).map(|e| e.digest.clone());
        if replacing.is_none() && previous.is_some() {
            return Err(InstallError::Exists { name, path: target });
        }
        if replacing.is_none() && std::fs::symlink_metadata(&target).is_ok() {
            return Err(InstallError::Occupied { name, path: target });
        }
        // Into place: the old folder (an update) aside, the new one in.
        let aside = staging.path.join("previous");
        let swap = Swap::new(&target, &aside, &root)?;
        let entry = LockEntry {
            skill: skill.id(),
            source,
            subdir,
            resolved,
            digest: digest.clone(),
            installed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            signed_by: match &check {
                SignatureCheck::Verified { key } => Some(key.clone()),
                _ => None,
            },
        };
        // The lock is the last step: if it fails, the swap is undone.
        lock.update(|s| s.insert(name.clone(), entry.clone()))?;
        swap.keep();
        tracing::info!(skill = %entry.skill, source = %entry.source.display(), digest = %digest, "skill installed");
        Ok(Installed {
            name,
            path: target,
            entry,
            signature: check,
            previous_digest: previous,
        })
    }
}

/// The skill's folder in what was fetched: `root` when it holds a
/// manifest, else its only subfolder when that does (an archive's
/// `name-1.0/`).
fn skill_folder(root: &Path, source: &Source) -> Result<PathBuf, InstallError> {
    let has_manifest = |d: &Path| format::folder_manifest(d).is_some();
    if !root.is_dir() {
        return Err(InstallError::NotASkill(format!(
            "{} has no such subfolder",
            source.display()
        )));
    }
    // Inside what was fetched, whatever links lie on the way (links were
    // checked to stay inside already; this is the belt to those braces).
    if let (Ok(real), Some(fetched)) = (
        std::fs::canonicalize(root),
        root.ancestors()
            .find(|a| a.file_name().is_some_and(|n| n == "fetched")),
    ) {
        if !real.starts_with(std::fs::canonicalize(fetched).unwrap_or_default()) {
            return Err(InstallError::unsafe_source(
                &source.display(),
                "the skill's folder lies outside the source",
            ));
        }
    }
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    if is_link(root) {
        return Err(InstallError::unsafe_source(
            &source.display(),
            "the skill's folder is a link; name the folder it points to",
        ));
    }
    if has_manifest(root) {
        return Ok(root.to_path_buf());
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| InstallError::io(root, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [only] if is_link(only) => Err(InstallError::unsafe_source(
            &source.display(),
            "the skill's folder is a link; name the folder it points to",
        )),
        [only] if has_manifest(only) => Ok(only.clone()),
        _ => Err(InstallError::NotASkill(format!(
            "no skill manifest ({}) at the top of {}; name the skill's folder with a subfolder",
            FOLDER_MANIFESTS.join(", "),
            source.display()
        ))),
    }
}

/// The new folder in place of the old; undone when dropped before
/// [`Swap::keep`] (the old folder back, the new one back in staging).
struct Swap {
    target: PathBuf,
    aside: PathBuf,
    new: PathBuf,
    had_old: bool,
    kept: bool,
}

impl Swap {
    fn new(target: &Path, aside: &Path, new: &Path) -> Result<Swap, InstallError> {
        let had_old = std::fs::symlink_metadata(target).is_ok();
        if had_old {
            std::fs::rename(target, aside).map_err(|e| InstallError::io(target, e))?;
        }
        let swap = Swap {
            target: target.to_path_buf(),
            aside: aside.to_path_buf(),
            new: new.to_path_buf(),
            had_old,
            kept: false,
        };
        if let Err(e) = std::fs::rename(new, target) {
            // Dropping `swap` puts the old folder back.
            drop(swap);
            return Err(InstallError::io(target, e));
        }
        Ok(swap)
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if std::fs::symlink_metadata(&self.target).is_ok() && !self.new.exists() {
            let _ = std::fs::rename(&self.target, &self.new);
        }
        if self.had_old {
            if let Err(e) = std::fs::rename(&self.aside, &self.target) {
                // Never lose the user's skill: keep it where it is and say so.
                tracing::error!(from = %self.aside.display(), to = %self.target.display(), error = %e, "cannot put an installed skill back; move it by hand");
                let keep = self.target.with_file_name(format!(
                    ".kept-{}-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                    self.target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ));
                let _ = std::fs::rename(&self.aside, keep);
            }
        }
    }
}

/// A hidden folder in the user's skill directory (so discovery skips it
/// and a rename from it is atomic), removed when dropped.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(user_dir: &Path) -> Result<Staging, InstallError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = user_dir.join(format!(".install-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| InstallError::io(&path, e))?;
        Ok(Staging { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove an install's staging folder");
        }
    }
}
