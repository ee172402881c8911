//! The process-count layer for root: the kernel does not apply
//! `RLIMIT_NPROC` to root, so a root helper moves itself into its own
//! cgroup `pids` group (`<pids root>/skillkernel/run-<pid>`, named by
//! `crate::cgroup`) with `pids.max` set, and the
//! program and all its descendants count against it.
//!
//! Best effort: a host without a writable pids hierarchy (a container with
//! a read-only `/sys/fs/cgroup`, cgroup v2 whose root holds processes) runs
//! the program anyway and the status line says the limit is not enforced,
//! and why. Failing instead would make every command fail on such hosts,
//! while the other layers (CPU seconds, address space, filesystem,
//! network) still hold.
//!
//! Must run before Landlock (which would deny the cgroupfs writes) and
//! never remove the group: the helper becomes the program; the parent
//! removes it afterwards (`cgroup::remove_run_cgroup`).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::cgroup::{CgroupVersion, PidsHierarchy};
use crate::{LayerSupport, Limits, ProcessLimitEnforcement, ProcessLimitOutcome};

/// Puts the helper in a pids group when the policy limits processes and
/// `RLIMIT_NPROC` cannot (root); reports how the limit is enforced.
pub fn apply(limits: &Limits) -> ProcessLimitOutcome {
    let outcome = |enforced_by, cgroup, reason: Option<String>| ProcessLimitOutcome {
        enforced_by,
        limit: limits.processes,
        cgroup,
        reason,
    };
    let Some(max) = limits.processes else {
        return outcome(
            ProcessLimitEnforcement::NotEnforced,
            None,
            Some("the policy sets no process limit".into()),
        );
    };
    let Some(exempt) = rlimit_exemption() else {
        return outcome(ProcessLimitEnforcement::Rlimit, None, None);
    };
    match join_run_group(max) {
        Ok(dir) => outcome(ProcessLimitEnforcement::CgroupPids, Some(dir), None),
        Err(why) => outcome(
            ProcessLimitEnforcement::NotEnforced,
            None,
            Some(format!("{exempt}, and no pids cgroup could be used: {why}")),
        ),
    }
}

/// `--probe`: can a process limit be enforced here? Read-only.
pub fn support() -> LayerSupport {
    let Some(exempt) = rlimit_exemption() else {
        return LayerSupport {
            available: true,
            detail: format!(
                "RLIMIT_NPROC (counts every process of uid {}, not only the sandbox's)",
                nix::unistd::getuid()
            ),
        };
    };
    match PidsHierarchy::find().and_then(|h| writable(&h).map(|()| h)) {
        Ok(h) => LayerSupport {
            available: true,
            detail: format!(
                "cgroup {} pids groups under {} ({exempt})",
                version_name(h.version),
                h.parent_dir().display()
            ),
        },
        Err(why) => LayerSupport {
            available: false,
            detail: format!("{exempt}, and no pids cgroup is usable: {why}"),
        },
    }
}

/// Why `RLIMIT_NPROC` does not bind the program, if it does not: the
/// kernel skips the check for the root user (and for `CAP_SYS_ADMIN` /
/// `CAP_SYS_RESOURCE`, which root has).
fn rlimit_exemption() -> Option<&'static str> {
    (nix::unistd::getuid().is_root() || nix::unistd::geteuid().is_root())
        .then_some("the helper runs as root, which RLIMIT_NPROC does not limit")
}

fn version_name(version: CgroupVersion) -> &'static str {
    match version {
        CgroupVersion::V1 => "v1",
        CgroupVersion::V2 => "v2",
    }
}

/// Makes `<root>/skillkernel/run-<pid>`, sets `pids.max` and moves the
/// helper in (the limit first, so there is no moment without it).
fn join_run_group(max: u64) -> Result<std::path::PathBuf, String> {
    let hierarchy = PidsHierarchy::find()?;
    let parent = hierarchy.parent_dir();
    if hierarchy.version == CgroupVersion::V2 {
        enable_pids_for_children(&hierarchy.root)?;
    }
    make_group(&parent)?;
    if hierarchy.version == CgroupVersion::V2 {
        enable_pids_for_children(&parent)?;
    }
    let pid = std::process::id();
    let dir = hierarchy.run_dir(pid);
    make_group(&dir)?;
    let joined = write(&dir.join("pids.max"), &max.to_string())
        .and_then(|()| write(&dir.join("cgroup.procs"), &pid.to_string()));
    if let Err(why) = joined {
        // Not in it: nobody else would remove it before the daemon restarts.
        let _ = std::fs::remove_dir(&dir);
        return Err(why);
    }
    Ok(dir)
}

fn make_group(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        // A crashed daemon's group for a pid now ours, or the shared parent.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

/// cgroup v2: child groups get `pids.max` only when the parent has `pids`
/// in `cgroup.subtree_control`, which a group holding processes (other than
/// the root) cannot have.
fn enable_pids_for_children(group: &Path) -> Result<(), String> {
    let control = group.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control)
        .map_err(|e| format!("cannot read {}: {e}", control.display()))?;
    if enabled.split_whitespace().any(|c| c == "pids") {
        return Ok(());
    }
    write_raw(&control, "+pids").map_err(|e| {
        let why = format!("cannot write \"+pids\" to {}: {e}", control.display());
        if e.raw_os_error() == Some(libc::EBUSY) {
            format!(
                "{why} ({} holds processes, and cgroup v2 gives child groups a \
                 controller only under a group without processes; run the daemon \
                 in a child group)",
                group.display()
            )
        } else {
            why
        }
    })
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    write_raw(file, value).map_err(|e| format!("cannot write {value:?} to {}: {e}", file.display()))
}

/// One `write(2)` of `value`: cgroupfs takes each write as one command.
fn write_raw(file: &Path, value: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(file)?
        .write_all(value.as_bytes())
}

/// Probe: could a root helper make and join a group? Without changing
/// anything: the mount must be writable, and under cgroup v2 the pids
/// controller already enabled for children or enable-able.
fn writable(hierarchy: &PidsHierarchy) -> Result<(), String> {
    let root = &hierarchy.root;
    nix::unistd::access(root, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("{} is not writable: {e}", root.display()))?;
    if hierarchy.version == CgroupVersion::V1 {
        return Ok(());
    }
    let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"));
    // Only a non-root group has `cgroup.type`; with processes it cannot
    // enable controllers for its children.
    let busy_non_root = root.join("cgroup.type").exists()
        && std::fs::read_to_string(root.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty());
    if !enabled && busy_non_root {
        return Err(format!(
            "{} holds processes and has no pids in cgroup.subtree_control \
             (cgroup v2 enables controllers for children only under a group \
             without processes)",
            root.display()
        ));
    }
    Ok(())
}
