//! Resource limits, set on the helper just before `execve` and inherited by
//! the program and its children: CPU seconds, address space, file size,
//! open files, processes, and never a core dump.
//!
//! A limit is only ever lowered: a request above the current hard limit is
//! clamped to it (raising needs privileges the sandbox must not use).

use crate::{Limits, SetupFailure, SetupStage};

use super::failure;

/// Sets the limits; returns what was set, by name.
pub fn apply(limits: &Limits) -> Result<Vec<(String, u64)>, SetupFailure> {
    let mut set = Vec::new();
    // CPU: SIGXCPU at the soft limit (catchable), SIGKILL one second later.
    if let Some(secs) = limits.cpu_secs {
        set.push(limit(
            libc::RLIMIT_CPU,
            "RLIMIT_CPU",
            secs,
            secs.saturating_add(1),
        )?);
    }
    let same = [
        (libc::RLIMIT_AS, "RLIMIT_AS", limits.address_space_bytes),
        (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE", limits.file_size_bytes),
        (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.open_files),
        (libc::RLIMIT_NPROC, "RLIMIT_NPROC", limits.processes),
        (libc::RLIMIT_CORE, "RLIMIT_CORE", Some(0)),
    ];
    for (resource, name, value) in same {
        if let Some(value) = value {
            set.push(limit(resource, name, value, value)?);
        }
    }
    Ok(set)
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn limit(
    resource: Resource,
    name: &str,
    soft: u64,
    hard: u64,
) -> Result<(String, u64), SetupFailure> {
    let fail = |what: &str| {
        failure(
            SetupStage::Rlimits,
            format!("{what} {name}: {}", std::io::Error::last_os_error()),
        )
    };
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return Err(fail("cannot read"));
    }
    let hard = hard.min(current.rlim_max);
    let new = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(resource, &new) } != 0 {
        return Err(fail("cannot set"));
    }
    Ok((name.to_string(), new.rlim_cur))
}
