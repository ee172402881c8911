//! A skill's digest: blake3 over every file that makes the skill.
//!
//! A folder skill (a folder holding `skill.yaml`, `SKILL.md` …) is the
//! whole folder, subfolders and hidden files included, except a `.git`
//! folder and `skill.minisig` (a signature cannot cover itself). A loose
//! workflow is its one file. Each link is a line of its own (where it
//! points); a link that leads out of the skill's folder is also followed
//! (each real directory once), so a linked script counts with the content
//! it runs. Names are escaped as `b3sum` escapes them (`\\`, `\n`), and
//! a name that is not UTF-8 is refused.
//!
//! The digest is built in two steps so a signature can cover it: the
//! [`DigestManifest`] lists each file's own blake3 and relative path, one
//! line each in path order (`b3sum`'s layout: `HASH  PATH`); the skill's
//! digest is the blake3 of that text. Limits keep a huge folder from
//! stalling a run: [`MAX_FILES`] files, [`MAX_BYTES`] in all.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::format::is_folder_manifest;

/// The most files a skill's digest covers.
pub const MAX_FILES: usize = 10_000;
/// The most bytes a skill's digest reads.
pub const MAX_BYTES: u64 = 512 << 20;
/// The signature file beside a skill's manifest, left out of its digest.
pub const SIGNATURE_FILE: &str = "skill.minisig";
/// Recorded test answers beside a skill's manifest, left out too.
pub const RECORDING_FILE: &str = "skill-tests.recorded.json";
/// The file a recording is written to before it replaces the last.
pub const RECORDING_TMP: &str = "skill-tests.recorded.json.tmp";

/// Why a skill's files could not be digested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot digest the skill's files at {path}: {reason}")]
pub struct DigestError {
    pub path: PathBuf,
    pub reason: String,
}

/// Each file's blake3 by relative path, in path order; a link is a line
/// of its own (`PATH (link)`, the hash of `link -> TARGET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestManifest {
    pub files: Vec<(String, blake3::Hash)>,
    /// Whether a link leads out of the skill's folder: the watcher cannot
    /// see such files change, so this digest must not be cached.
    pub follows_outside: bool,
}

impl DigestManifest {
    /// `HASH  PATH` lines, the text a signature covers.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (path, hash) in &self.files {
            out.push_str(&hash.to_hex());
            out.push_str("  ");
            out.push_str(path);
            out.push('\n');
        }
        out
    }

    /// The skill's digest, hex: blake3 of [`DigestManifest::text`].
    pub fn digest(&self) -> String {
        blake3::hash(self.text().as_bytes()).to_hex().to_string()
    }
}

/// What a skill's digest covers, for its manifest at `manifest`: its
/// folder when the manifest is a folder manifest, else the file itself.
pub fn skill_root(manifest: &Path) -> PathBuf {
    match manifest.parent() {
        Some(dir) if is_folder_manifest(manifest) => dir.to_path_buf(),
        _ => manifest.to_path_buf(),
    }
}

/// The digest manifest of `root` (a skill folder or one file).
/// Blocks on file I/O.
pub fn manifest(root: &Path) -> Result<DigestManifest, DigestError> {
    let fail = |reason: String| DigestError {
        path: root.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(root).map_err(|e| fail(e.to_string()))?;
    // The skill's own files are those under its real folder.
    let real_root = std::fs::canonicalize(root).map_err(|e| fail(e.to_string()))?;
    let mut walk = Walk {
        files: Vec::new(),
        bytes: 0,
        visited: HashSet::new(),
        real_root,
        follows_outside: false,
    };
    if meta.is_dir() {
        walk.dir(root, "", &meta).map_err(fail)?;
    } else {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        walk.file(root, escape(&name), &meta).map_err(fail)?;
    }
    walk.files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(DigestManifest {
        files: walk.files,
        follows_outside: walk.follows_outside,
    })
}

/// A path as a manifest line holds it: `\` and a newline escaped, as
/// b3sum does, so no name can pass for two lines.
fn escape(path: &str) -> String {
    path.replace('\\', "\\\\").replace('\n', "\\n")
}

struct Walk {
    files: Vec<(String, blake3::Hash)>,
    bytes: u64,
    visited: HashSet<(u64, u64)>,
    real_root: PathBuf,
    follows_outside: bool,
}

impl Walk {
    fn dir(&mut self, dir: &Path, rel: &str, meta: &std::fs::Metadata) -> Result<(), String> {
        if !self.visited.insert((meta.dev(), meta.ino())) {
            return Ok(());
        }
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(format!(
                    "{}: a file name that is not UTF-8",
                    entry.path().display()
                ));
            };
            // The signature cannot cover itself; recorded test answers
            // never change what a run does.
            if name == ".git"
                || (rel.is_empty()
                    && (name == SIGNATURE_FILE || name == RECORDING_FILE || name == RECORDING_TMP))
            {
                continue;
            }
            let path = entry.path();
            let rel = if rel.is_empty() {
                escape(&name)
            } else {
                format!("{rel}/{}", escape(&name))
            };
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if is_link {
                // Every link counts as where it points...
                let target =
                    std::fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let text = format!("link -> {}", target.display());
                self.files
                    .push((format!("{rel} (link)"), blake3::hash(text.as_bytes())));
                // ...and what it leads to outside the skill counts too
                // (inside, those files count under their own paths).
                // A link to nothing may lead somewhere later: outside.
                let inside = std::fs::canonicalize(&path)
                    .map(|real| real.starts_with(&self.real_root))
                    .unwrap_or(false);
                if inside {
                    continue;
                }
                self.follows_outside = true;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => self.dir(&path, &rel, &m)?,
                Ok(m) if m.is_file() => self.file(&path, rel, &m)?,
                Ok(_) | Err(_) => {} // a socket, a fifo, a dangling link (counted above)
            }
            if self.files.len() > MAX_FILES {
                return Err(format!("more than {MAX_FILES} files"));
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, rel: String, meta: &std::fs::Metadata) -> Result<(), String> {
        self.bytes = self.bytes.saturating_add(meta.len());
        if self.bytes > MAX_BYTES {
            return Err(format!("more than {} MiB of files", MAX_BYTES >> 20));
        }
        let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        self.files.push((rel, hasher.finalize()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn folder() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("skill.yaml"), "name: x\n").unwrap();
        fs::create_dir_all(t.path().join("scripts")).unwrap();
        fs::write(t.path().join("scripts/run.sh"), "echo hi\n").unwrap();
        t
    }

    #[test]
    fn any_file_of_the_folder_changes_the_digest_but_git_and_the_signature_do_not() {
        let t = folder();
        let first = manifest(t.path()).unwrap();
        assert_eq!(
            first.files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            ["scripts/run.sh", "skill.yaml"]
        );
        fs::create_dir_all(t.path().join(".git")).unwrap();
        fs::write(t.path().join(".git/HEAD"), "ref\n").unwrap();
        fs::write(t.path().join(SIGNATURE_FILE), "sig\n").unwrap();
        assert_eq!(manifest(t.path()).unwrap().digest(), first.digest());
        fs::write(t.path().join("scripts/run.sh"), "echo bye\n").unwrap();
        let edited = manifest(t.path()).unwrap().digest();
        assert_ne!(edited, first.digest());
        fs::write(t.path().join(".hidden"), "x").unwrap();
        assert_ne!(manifest(t.path()).unwrap().digest(), edited);
    }

    #[test]
    fn a_link_counts_as_where_it_points_and_one_out_of_the_skill_also_by_what_it_leads_to() {
        let t = folder();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("tool"), "v1\n").unwrap();
        std::os::unix::fs::symlink("scripts", t.path().join("bin")).unwrap();
        let inside = manifest(t.path()).unwrap();
        assert!(!inside.follows_outside);
        assert!(
            inside.text().contains("  bin (link)\n"),
            "{}",
            inside.text()
        );
        fs::remove_file(t.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(".", t.path().join("bin")).unwrap();
        assert_ne!(
            manifest(t.path()).unwrap().digest(),
            inside.digest(),
            "retargeted"
        );
        std::os::unix::fs::symlink(outside.path().join("tool"), t.path().join("tool")).unwrap();
        let out = manifest(t.path()).unwrap();
        assert!(out.follows_outside);
        fs::write(outside.path().join("tool"), "v2\n").unwrap();
        assert_ne!(manifest(t.path()).unwrap().digest(), out.digest());
        fs::write(t.path().join("a\nb"), "x").unwrap();
        assert!(manifest(t.path()).unwrap().text().contains("a\\nb"));
    }

    #[test]
    fn the_manifest_text_is_b3sum_lines_in_path_order() {
        let t = folder();
        let text = manifest(t.path()).unwrap().text();
        let expected = format!(
            "{}  scripts/run.sh\n{}  skill.yaml\n",
            blake3::hash(b"echo hi\n").to_hex(),
            blake3::hash(b"name: x\n").to_hex()
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn a_folder_manifest_digests_its_folder_and_a_loose_workflow_itself() {
        assert_eq!(
            skill_root(Path::new("/s/a/skill.yaml")),
            PathBuf::from("/s/a")
        );
        assert_eq!(
            skill_root(Path::new("/s/flows/release.yaml")),
            PathBuf::from("/s/flows/release.yaml")
        );
    }
}
