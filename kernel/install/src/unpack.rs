//! Unpacking archives and copying folders into the staging area, safely.
//!
//! * No entry lands outside the destination: absolute paths and `..` are
//!   refused, as is a link whose target leaves the destination; hard links,
//!   devices and fifos are refused.
//! * Links are made last, so a later entry can never be written through a
//!   link an earlier one made.
//! * At most [`MAX_FILES`] entries and [`MAX_BYTES`] of content.
//!
//! An error leaves a half-filled destination: the caller's staging guard
//! removes it.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::InstallError;

/// The most entries one skill may have.
pub const MAX_FILES: usize = 10_000;
/// The most content one skill may unpack to.
pub const MAX_BYTES: u64 = 256 << 20;

/// What was written so far, against the limits.
#[derive(Default)]
struct Budget {
    files: usize,
    bytes: u64,
    /// Links to make once every file is in place: (at, target).
    links: Vec<(PathBuf, PathBuf)>,
}

impl Budget {
    fn entry(&mut self, what: &str) -> Result<(), InstallError> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(InstallError::unsafe_source(
                what,
                format!("more than {MAX_FILES} entries"),
            ));
        }
        Ok(())
    }

    /// Copies `from` to a new file at `to` (mode `executable` or not),
    /// counting its bytes.
    fn write(
        &mut self,
        what: &str,
        mut from: impl Read,
        to: &Path,
        executable: bool,
    ) -> Result<(), InstallError> {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| InstallError::io(parent, e))?;
        }
        let left = MAX_BYTES.saturating_sub(self.bytes);
        let mut file = std::fs::File::create(to).map_err(|e| InstallError::io(to, e))?;
        let n = std::io::copy(&mut (&mut from).take(left + 1), &mut file)
            .map_err(|e| InstallError::io(to, e))?;
        self.bytes += n;
        if n > left {
            return Err(InstallError::unsafe_source(
                what,
                format!("more than {} MiB unpacked", MAX_BYTES >> 20),
            ));
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
            .map_err(|e| InstallError::io(to, e))?;
        Ok(())
    }

    /// A link at `rel` (inside `dest`) to `target`, refused when it would
    /// lead out of `dest`; made by [`Budget::finish`].
    fn link(&mut self, what: &str, rel: &Path, target: &Path) -> Result<(), InstallError> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if target.is_absolute() || !stays_inside(&parent.join(target)) {
            return Err(InstallError::unsafe_source(
                what,
                format!(
                    "`{}` is a link to {}, outside the skill",
                    rel.display(),
                    target.display()
                ),
            ));
        }
        self.links.push((rel.to_path_buf(), target.to_path_buf()));
        Ok(())
    }

    /// Makes the links — never through another link — then checks that
    /// every link in `dest` resolves inside it (see [`check_links`]).
    fn finish(self, what: &str, dest: &Path) -> Result<(), InstallError> {
        for (rel, target) in self.links {
            no_link_on_the_way(what, dest, &rel)?;
            let at = dest.join(&rel);
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent).map_err(|e| InstallError::io(parent, e))?;
            }
            std::os::unix::fs::symlink(&target, &at).map_err(|e| InstallError::io(&at, e))?;
        }
        check_links(what, dest)
    }
}

/// Refuses `rel` (inside `dest`) when one of its folders is a link: a
/// path through a link may lead anywhere.
fn no_link_on_the_way(what: &str, dest: &Path, rel: &Path) -> Result<(), InstallError> {
    let mut at = dest.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(InstallError::unsafe_source(
                what,
                format!("`{}` lies behind a link", rel.display()),
            ));
        }
    }
    Ok(())
}

/// Checks every link under `dest` resolves to something inside it: links
/// chained through links included, dangling links refused. What git
/// clones goes through this too.
pub fn check_links(what: &str, dest: &Path) -> Result<(), InstallError> {
    let root = std::fs::canonicalize(dest).map_err(|e| InstallError::io(dest, e))?;
    let mut stack = vec![dest.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| InstallError::io(&dir, e))? {
            let entry = entry.map_err(|e| InstallError::io(&dir, e))?;
            seen += 1;
            if seen > MAX_FILES {
                return Err(InstallError::unsafe_source(
                    what,
                    format!("more than {MAX_FILES} entries"),
                ));
            }
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| InstallError::io(&path, e))?;
            if kind.is_symlink() {
                let rel = path
                    .strip_prefix(dest)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                match std::fs::canonicalize(&path) {
                    Ok(real) if real.starts_with(&root) => {}
                    Ok(real) => {
                        return Err(InstallError::unsafe_source(
                            what,
                            format!("`{rel}` is a link to {}, outside the skill", real.display()),
                        ))
                    }
                    Err(_) => {
                        return Err(InstallError::unsafe_source(
                            what,
                            format!("`{rel}` is a link to nothing (or outside the skill)"),
                        ))
                    }
                }
            } else if kind.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// Whether a relative path, `..` taken lexically, stays inside its root.
fn stays_inside(rel: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// An entry's path as a safe relative path.
fn safe_rel(what: &str, path: &Path) -> Result<PathBuf, InstallError> {
    let ok = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok || path.as_os_str().is_empty() {
        return Err(InstallError::unsafe_source(
            what,
            format!(
                "the entry `{}` would land outside the skill",
                path.display()
            ),
        ));
    }
    Ok(path.components().collect())
}

/// Unpacks `bytes`, a `.tar.gz` or a `.zip` (told by their first bytes),
/// into `dest`.
pub fn archive(what: &str, bytes: &[u8], dest: &Path) -> Result<(), InstallError> {
    std::fs::create_dir_all(dest).map_err(|e| InstallError::io(dest, e))?;
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        zip(what, bytes, dest)
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        tar_gz(what, bytes, dest)
    } else {
        Err(InstallError::bad_source(
            what,
            "this is neither a gzip'd tar nor a zip archive",
        ))
    }
}

fn tar_gz(what: &str, bytes: &[u8], dest: &Path) -> Result<(), InstallError> {
    let broken =
        |e: std::io::Error| InstallError::bad_source(what, format!("the archive is broken: {e}"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut budget = Budget::default();
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        budget.entry(what)?;
        let path = entry.path().map_err(broken)?.into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        }
        let rel = safe_rel(what, &path)?;
        if kind.is_dir() {
            std::fs::create_dir_all(dest.join(&rel)).map_err(|e| InstallError::io(dest, e))?;
        } else if kind.is_file() {
            let executable = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
            budget.write(what, &mut entry, &dest.join(&rel), executable)?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(broken)?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            budget.link(what, &rel, &target)?;
        } else {
            return Err(InstallError::unsafe_source(
                what,
                format!(
                    "`{}` is a hard link, device or fifo; a skill holds files, folders and links inside it",
                    rel.display()
                ),
            ));
        }
    }
    budget.finish(what, dest)
}

fn zip(what: &str, bytes: &[u8], dest: &Path) -> Result<(), InstallError> {
    let broken = |e: zip::result::ZipError| {
        InstallError::bad_source(what, format!("the archive is broken: {e}"))
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(broken)?;
    let mut budget = Budget::default();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(broken)?;
        budget.entry(what)?;
        let rel = safe_rel(what, Path::new(file.name()))?;
        let mode = file.unix_mode().unwrap_or(0o644);
        if file.is_dir() {
            std::fs::create_dir_all(dest.join(&rel)).map_err(|e| InstallError::io(dest, e))?;
        } else if mode & 0o170000 == 0o120000 {
            let mut target = String::new();
            file.by_ref()
                .take(4096)
                .read_to_string(&mut target)
                .map_err(|e| {
                    InstallError::bad_source(what, format!("the archive is broken: {e}"))
                })?;
            budget.link(what, &rel, Path::new(&target))?;
        } else {
            budget.write(what, &mut file, &dest.join(&rel), mode & 0o111 != 0)?;
        }
    }
    budget.finish(what, dest)
}

/// Copies folder `from` into `dest`: files, folders, and links that stay
/// inside it; `.git` is left out.
pub fn folder(from: &Path, dest: &Path) -> Result<(), InstallError> {
    let what = from.display().to_string();
    let mut budget = Budget::default();
    std::fs::create_dir_all(dest).map_err(|e| InstallError::io(dest, e))?;
    copy_into(&what, from, from, dest, &mut budget)?;
    budget.finish(&what, dest)
}

fn copy_into(
    what: &str,
    root: &Path,
    dir: &Path,
    dest: &Path,
    budget: &mut Budget,
) -> Result<(), InstallError> {
    let entries = std::fs::read_dir(dir).map_err(|e| InstallError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| InstallError::io(dir, e))?;
        if entry.file_name() == ".git" {
            continue;
        }
        budget.entry(what)?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let kind = entry.file_type().map_err(|e| InstallError::io(&path, e))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| InstallError::io(&path, e))?;
            budget.link(what, &rel, &target)?;
        } else if kind.is_dir() {
            std::fs::create_dir_all(dest.join(&rel)).map_err(|e| InstallError::io(dest, e))?;
            copy_into(what, root, &path, dest, budget)?;
        } else if kind.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let meta = entry.metadata().map_err(|e| InstallError::io(&path, e))?;
            let file = std::fs::File::open(&path).map_err(|e| InstallError::io(&path, e))?;
            budget.write(
                what,
                file,
                &dest.join(&rel),
                meta.permissions().mode() & 0o111 != 0,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Written raw: the builder's own path checks would refuse `..`.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn an_archive_unpacks_with_links_inside_and_refuses_escapes() {
        use tar::EntryType::{Regular, Symlink};
        let ok = tar_gz_of(&[
            ("s/skill.yaml", Regular, b"name: s\n", None),
            ("s/latest.yaml", Symlink, b"", Some("skill.yaml")),
        ]);
        let t = tempfile::tempdir().unwrap();
        archive("ok.tar.gz", &ok, t.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("s/latest.yaml")).unwrap(),
            "name: s\n"
        );

        for (bad, why) in [
            (
                tar_gz_of(&[("../evil", Regular, b"x", None)]),
                "outside the skill",
            ),
            (
                tar_gz_of(&[("s/keys", Symlink, b"", Some("/home/ana/.ssh"))]),
                "outside the skill",
            ),
            (
                tar_gz_of(&[("s/up", Symlink, b"", Some("../../etc"))]),
                "outside the skill",
            ),
        ] {
            let t = tempfile::tempdir().unwrap();
            let e = archive("bad.tar.gz", &bad, t.path()).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        // Links chained through links (each lexically inside) that would
        // land outside: refused, and nothing is made outside.
        let chained = tar_gz_of(&[
            ("s/skill.yaml", Regular, b"name: s\n", None),
            ("s/d1/d2/d3/u", Symlink, b"", Some("../../..")),
            ("s/d1/d2/d3/u/e", Symlink, b"", Some("../../../../../x")),
        ]);
        let t = tempfile::tempdir().unwrap();
        let e = archive("chain.tar.gz", &chained, t.path()).unwrap_err();
        assert!(e.to_string().contains("behind a link"), "{e}");
        assert!(!t.path().join("s/e").exists());
        let escaping = tar_gz_of(&[
            ("s/skill.yaml", Regular, b"name: s\n", None),
            ("s/d1/d2/d3/u", Symlink, b"", Some("../../..")),
            ("s/x", Symlink, b"", Some("d1/d2/d3/u/../../..")),
        ]);
        let e = archive("esc.tar.gz", &escaping, tempfile::tempdir().unwrap().path()).unwrap_err();
        assert!(e.to_string().contains("outside the skill"), "{e}");
        let e = archive(
            "x.zip",
            b"not an archive",
            tempfile::tempdir().unwrap().path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
    }

    #[test]
    fn a_zip_unpacks_and_refuses_a_path_out() {
        use std::io::Write;
        let build = |name: &str| {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            w.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(b"name: z\n").unwrap();
            w.finish().unwrap().into_inner()
        };
        let t = tempfile::tempdir().unwrap();
        archive("ok.zip", &build("z/skill.yaml"), t.path()).unwrap();
        assert!(t.path().join("z/skill.yaml").is_file());
        let e = archive(
            "bad.zip",
            &build("../../z/skill.yaml"),
            tempfile::tempdir().unwrap().path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("outside the skill"), "{e}");
    }
}
