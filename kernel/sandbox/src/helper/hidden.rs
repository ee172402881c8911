//! Denied paths inside grants. The policy's `deny` list (secrets, the
//! kernel's own files) holds whatever `read`, `write` or the workspace
//! grant around it: a connection file kept in the working directory, a
//! `~/.ssh` under a granted home directory. Landlock only ever adds
//! rights, so a denied path under a granted folder needs one of two things:
//!
//! * **masked** (preferred): the helper enters a mount namespace of its own
//!   (`unshare(CLONE_NEWNS)`; with a user namespace when that is refused)
//!   and mounts over each such path an empty read-only tmpfs (a folder) or
//!   `/dev/null` bound read-only and without devices (a file: opening it
//!   fails, and its metadata cannot be changed). The grants stay
//!   whole: the workspace keeps every right on its own top level. Mounts
//!   never reach the host (`/` is made private first), and Landlock forbids
//!   the program any mount or unmount of its own.
//! * **allowed around** (no namespace to be had, or `mount_namespace` off):
//!   the grant is replaced by grants of each entry beside the way down to
//!   the denied path. No set-up, but the folders on the way lose their own
//!   rights (listing them, creating in them), and what appears in them
//!   after set-up is out of reach. Links among those entries are not
//!   granted: Landlock would follow one to wherever it points.
//!
//! A grant at or inside a denied path is kept as the policy says (the
//! daemon puts one there only for a skill the user trusts with exactly
//! it); its denied path is allowed around, since a mask would hide it.
//! This module must never leave a denied path that lies inside a grant
//! reachable: when neither way works for one, its grant is dropped.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::namespaces::{self, Made};
use crate::deny::resolved;
use crate::{HiddenOutcome, SandboxPolicy};

/// What Landlock grants once the denied paths are hidden.
#[derive(Debug)]
pub struct Hidden {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub outcome: HiddenOutcome,
}

/// The denied paths inside grants, and how each is to be hidden.
#[derive(Debug)]
pub struct Plan {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    to_mask: Vec<PathBuf>,
    around: Vec<PathBuf>,
    reason: Option<String>,
}

impl Plan {
    /// Finds the policy's denied paths that lie inside its grants.
    pub fn new(policy: &SandboxPolicy) -> Plan {
        let write: Vec<PathBuf> = policy
            .write
            .iter()
            .chain(policy.workspace.as_ref())
            .map(|p| resolved(p))
            .collect();
        let read: Vec<PathBuf> = policy.read.iter().map(|p| resolved(p)).collect();
        // A denied path that does not exist has nothing to hide.
        let deny: Vec<PathBuf> = policy
            .deny
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let grants = || read.iter().chain(&write);
        let exposed = deny
            .into_iter()
            .filter(|d| grants().any(|g| d.starts_with(g) && d != g));
        let (mut to_mask, around): (Vec<PathBuf>, Vec<PathBuf>) =
            exposed.partition(|d| policy.mount_namespace && !grants().any(|g| g.starts_with(d)));
        // A path under another masked one is hidden with it (and mounting
        // over it after would fail).
        let outer = to_mask.clone();
        to_mask.retain(|d| !outer.iter().any(|o| o != d && d.starts_with(o)));
        let reason = (!around.is_empty()).then(|| {
            if policy.mount_namespace {
                "a grant lies inside them (a mount would hide it)".to_string()
            } else {
                "`mount_namespace` is off".to_string()
            }
        });
        Plan {
            read,
            write,
            to_mask,
            around,
            reason,
        }
    }

    /// Does hiding need a mount namespace?
    pub fn needs_mount_namespace(&self) -> bool {
        !self.to_mask.is_empty()
    }

    /// Hides the paths: masks them in the run's mount namespace when
    /// `namespace` is one, else grants around them. Before `no_new_privs`
    /// and Landlock (which forbids mounting).
    pub fn apply(self, namespace: Option<Result<Made, String>>) -> Hidden {
        let Plan {
            read,
            write,
            to_mask,
            mut around,
            reason,
        } = self;
        let mut outcome = HiddenOutcome {
            reason,
            ..HiddenOutcome::default()
        };
        match namespace {
            Some(Ok(made)) => {
                outcome.namespace = Some(made.as_str().to_string());
                for path in to_mask {
                    match mask(&path) {
                        Ok(()) => outcome.masked.push(path),
                        Err(e) => {
                            outcome.reason =
                                Some(format!("cannot mount over {}: {e}", path.display()));
                            around.push(path);
                        }
                    }
                }
            }
            Some(Err(e)) => {
                outcome.reason = Some(e);
                around.extend(to_mask);
            }
            None => around.extend(to_mask),
        }
        let read = grant_around(&read, &around);
        let write = grant_around(&write, &around);
        outcome.allowed_around = around;
        Hidden {
            read,
            write,
            outcome,
        }
    }
}

/// `grants` with each one holding a path of `denied` replaced by the
/// entries around it.
pub fn grant_around(grants: &[PathBuf], denied: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for grant in grants {
        around(grant, denied, &mut out);
    }
    out
}

fn around(grant: &Path, denied: &[PathBuf], out: &mut Vec<PathBuf>) {
    let holds = |d: &PathBuf| d.starts_with(grant) && d != grant;
    if !denied.iter().any(holds) {
        out.push(grant.to_path_buf());
        return;
    }
    // A folder that cannot be listed: nothing of it is granted (never
    // wider than meant).
    let Ok(entries) = std::fs::read_dir(grant) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_link = entry.file_type().map_or(true, |t| t.is_symlink());
        if is_link || denied.contains(&path) {
            continue;
        }
        around(&path, denied, out);
    }
}

/// Mounts over `path`: an empty read-only tmpfs on a folder, `/dev/null`
/// on anything else.
fn mask(path: &Path) -> std::io::Result<()> {
    let target = CString::new(path.as_os_str().as_bytes())?;
    if path.is_dir() {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let data = c"size=4k,nr_inodes=1,mode=000";
        namespaces::mount_call(Some(c"tmpfs"), &target, Some(c"tmpfs"), flags, Some(data))
    } else {
        namespaces::mount_call(Some(c"/dev/null"), &target, None, libc::MS_BIND, None)?;
        // Read-only and without devices: opening it fails ("Permission
        // denied"), and chmod or chown cannot reach the real /dev/null.
        let flags = libc::MS_REMOUNT
            | libc::MS_BIND
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NOEXEC
            | libc::MS_NODEV;
        if let Err(e) = namespaces::mount_call(None, &target, None, flags, None) {
            // SAFETY: target is a valid C string; the mount is ours.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_holding_a_denied_path_becomes_the_entries_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for d in ["a/deep/secret", "a/deep/other", "b"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("kernel.json"), "{}").unwrap();
        std::fs::write(root.join("notes.txt"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("a/deep/secret"), root.join("link")).unwrap();
        let denied = [root.join("a/deep/secret"), root.join("kernel.json")];
        let mut got = grant_around(&[root.clone(), PathBuf::from("/usr")], &denied);
        got.sort();
        let mut want = vec![
            root.join("a/deep/other"),
            root.join("b"),
            root.join("notes.txt"),
            PathBuf::from("/usr"),
        ];
        want.sort();
        // Not the folders on the way, not the link, not the denied.
        assert_eq!(got, want);
    }

    #[test]
    fn a_grant_without_denied_paths_is_kept_whole() {
        let got = grant_around(&[PathBuf::from("/usr")], &[PathBuf::from("/home/u/.ssh")]);
        assert_eq!(got, vec![PathBuf::from("/usr")]);
    }
}
