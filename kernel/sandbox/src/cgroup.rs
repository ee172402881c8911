//! The cgroup `pids` groups of sandboxed runs: where they live, and the
//! parent's clean-up after them.
//!
//! When the daemon runs as root, `RLIMIT_NPROC` does not limit the program
//! (the kernel exempts root), so the `sandbox-exec` helper moves itself into
//! a per-run group `<pids root>/skillkernel/run-<helper pid>` with
//! `pids.max` set, before it confines itself further and `execve`s. The
//! helper cannot remove that group (it *is* the program by then), so the
//! parent does: [`remove_run_cgroup`] once the run is over, and
//! [`sweep_stale_run_cgroups`] at daemon start for groups a crashed daemon
//! left behind. Both the helper and the parent name the group through
//! [`PidsHierarchy::run_dir`], so the two cannot disagree.
//!
//! The only code in the kernel that touches cgroupfs: it reads
//! `/proc/self/mounts` and removes directories under the cgroup mount
//! (filesystem I/O, blocking). It must never create a group, write a limit
//! or move a process: that is the helper's job, in its own single-threaded
//! process.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The group under the pids root that holds every run's group. It never
/// holds a process itself (cgroup v2 allows controllers in children only
/// of groups without processes).
pub const PARENT_GROUP: &str = "skillkernel";

/// Prefix of one run's group name; the helper's pid follows.
const RUN_PREFIX: &str = "run-";

/// How long [`remove_run_cgroup`] waits for the kernel to notice that the
/// group is empty (reaped tasks leave the group a little after `wait`).
const REMOVE_RETRIES: u32 = 40;
const REMOVE_RETRY_PAUSE: Duration = Duration::from_millis(5);

/// Which cgroup version provides the `pids` controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// A `cgroup` mount with the `pids` controller (e.g. `/sys/fs/cgroup/pids`).
    V1,
    /// A `cgroup2` mount whose `cgroup.controllers` lists `pids`.
    V2,
}

/// A mounted hierarchy with the `pids` controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidsHierarchy {
    pub version: CgroupVersion,
    /// The mount point (the root group as this process sees it).
    pub root: PathBuf,
}

impl PidsHierarchy {
    /// The hierarchy this process sees, from `/proc/self/mounts`; `Err` is
    /// the reason there is none, for reports.
    pub fn find() -> Result<Self, String> {
        let mounts = std::fs::read_to_string("/proc/self/mounts")
            .map_err(|e| format!("cannot read /proc/self/mounts: {e}"))?;
        find_in(&mounts, |root| {
            std::fs::read_to_string(root.join("cgroup.controllers")).ok()
        })
    }

    /// `<root>/skillkernel`: the parent of every run's group.
    pub fn parent_dir(&self) -> PathBuf {
        self.root.join(PARENT_GROUP)
    }

    /// `<root>/skillkernel/run-<helper_pid>`: one run's group. The only
    /// place the name is made.
    pub fn run_dir(&self, helper_pid: u32) -> PathBuf {
        self.parent_dir().join(format!("{RUN_PREFIX}{helper_pid}"))
    }
}

/// The pids group the helper with pid `helper_pid` uses (or would use), if
/// this host has a pids hierarchy. It may not exist: the helper only makes
/// it when it runs as root and the policy limits processes.
pub fn run_cgroup_dir(helper_pid: u32) -> Option<PathBuf> {
    PidsHierarchy::find().ok().map(|h| h.run_dir(helper_pid))
}

/// Removes the run's group, if there is one. Call it after the helper (the
/// program) has exited *and* its process group is dead, whatever the helper
/// reported (it may have made the group, then failed). Blocking: while the
/// kernel still counts reaped tasks (`EBUSY`) it retries for up to 200 ms,
/// so call it from a blocking context (`spawn_blocking`). A group it cannot
/// remove is logged and left for [`sweep_stale_run_cgroups`].
pub fn remove_run_cgroup(helper_pid: u32) {
    let Some(dir) = run_cgroup_dir(helper_pid) else {
        return;
    };
    for _ in 0..REMOVE_RETRIES {
        match std::fs::remove_dir(&dir) {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(REMOVE_RETRY_PAUSE)
            }
            Err(e) => {
                tracing::warn!(group = %dir.display(), "cannot remove the run's pids cgroup: {e}");
                return;
            }
        }
    }
    tracing::warn!(
        group = %dir.display(),
        "the run's pids cgroup still holds processes; left for the next daemon start"
    );
}

/// Removes every empty `run-*` group whose helper is gone (a crashed
/// daemon's leftovers). Call it at daemon start. Groups whose pid is alive
/// are left alone: a helper of another daemon may have just made its group
/// and not yet joined it. Groups that still hold processes are kept (rmdir
/// refuses) and logged.
pub fn sweep_stale_run_cgroups() {
    let Ok(hierarchy) = PidsHierarchy::find() else {
        return;
    };
    let parent = hierarchy.parent_dir();
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(run_pid) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match std::fs::remove_dir(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            // A root daemon's leftovers, seen by a non-root one.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
            Err(e) => tracing::warn!(
                group = %entry.path().display(),
                "stale sandbox pids cgroup not removed: {e}"
            ),
        }
    }
    if removed > 0 {
        tracing::info!(removed, parent = %parent.display(), "removed stale sandbox pids cgroups");
    }
}

/// The helper pid in a run group's name (`run-1234`).
fn run_pid(name: &str) -> Option<u32> {
    name.strip_prefix(RUN_PREFIX)?.parse().ok()
}

/// The pids hierarchy in a `/proc/self/mounts` text: a v1 `cgroup` mount
/// with the `pids` option first (in a hybrid layout the controller is
/// bound there, not to v2), else a `cgroup2` mount whose controllers
/// (`controllers(mount point)`) list `pids`.
fn find_in(
    mounts: &str,
    controllers: impl Fn(&Path) -> Option<String>,
) -> Result<PidsHierarchy, String> {
    let entries: Vec<(&str, &str, &str)> = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            Some((fields.next()?, fields.next()?, fields.next()?))
        })
        .collect();
    let v1 = entries.iter().find(|(_, fstype, options)| {
        *fstype == "cgroup" && options.split(',').any(|o| o == "pids")
    });
    if let Some((root, ..)) = v1 {
        return Ok(PidsHierarchy {
            version: CgroupVersion::V1,
            root: PathBuf::from(root),
        });
    }
    let v2: Vec<&str> = entries
        .iter()
        .filter(|(_, fstype, _)| *fstype == "cgroup2")
        .map(|(root, ..)| *root)
        .collect();
    if let Some(root) = v2.iter().find(|root| {
        controllers(Path::new(root)).is_some_and(|c| c.split_whitespace().any(|c| c == "pids"))
    }) {
        return Ok(PidsHierarchy {
            version: CgroupVersion::V2,
            root: PathBuf::from(root),
        });
    }
    Err(match v2.first() {
        Some(root) => format!(
            "the cgroup2 mount at {root} has no pids controller (cgroup.controllers) \
             and no cgroup v1 pids hierarchy is mounted"
        ),
        None => "no cgroup pids hierarchy is mounted (neither a cgroup v1 `pids` \
                 mount nor cgroup2 in /proc/self/mounts)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    #[test]
    fn a_v1_pids_mount_wins_over_a_hybrid_unified_mount() {
        let found = find_in(HYBRID, |_| Some("pids memory".into())).unwrap();
        assert_eq!(found.version, CgroupVersion::V1);
        assert_eq!(found.root, Path::new("/sys/fs/cgroup/pids"));
        assert_eq!(
            found.run_dir(42),
            Path::new("/sys/fs/cgroup/pids/skillkernel/run-42")
        );
    }

    #[test]
    fn cgroup2_is_used_only_when_its_controllers_list_pids() {
        let mounts = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        let found = find_in(mounts, |_| Some("cpuset cpu io memory pids\n".into())).unwrap();
        assert_eq!(found.version, CgroupVersion::V2);
        assert_eq!(found.root, Path::new("/sys/fs/cgroup"));

        let reason = find_in(mounts, |_| Some("cpu memory\n".into())).unwrap_err();
        assert!(reason.contains("no pids controller"), "{reason}");
        let reason = find_in("proc /proc proc rw 0 0\n", |_| None).unwrap_err();
        assert!(reason.contains("no cgroup pids hierarchy"), "{reason}");
    }

    #[test]
    fn only_run_groups_are_swept() {
        assert_eq!(run_pid("run-1234"), Some(1234));
        assert_eq!(run_pid("run-"), None);
        assert_eq!(run_pid("run-12x"), None);
        assert_eq!(run_pid("cgroup.procs"), None);
    }
}
