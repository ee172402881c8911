//! `sandbox-exec --probe`: which layers this host can enforce, and why not,
//! as one JSON object ([`HostSupport`]) on stdout.
//!
//! Read-only: it must never change the calling process (the daemon may
//! call the same checks for `%sandbox status`).

use std::process::ExitCode;

use crate::{HostSupport, LayerSupport};

use super::{landlock_rules, pids_cgroup, seccomp_filter};

/// Prints the host's support; exit 0 (a host without a layer is a fact to
/// report, not an error).
pub fn print() -> ExitCode {
    match serde_json::to_string_pretty(&host_support()) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("skillkernel sandbox-exec: cannot encode the probe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What this host supports.
pub fn host_support() -> HostSupport {
    let kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default();
    let (landlock, landlock_abi) = match landlock_rules::kernel_abi() {
        Ok(abi) => (
            layer(
                true,
                format!(
                    "Landlock ABI {abi}{}",
                    if abi >= 4 {
                        " (filesystem and TCP rules)"
                    } else {
                        " (filesystem rules only; TCP needs ABI 4, Linux 6.7)"
                    }
                ),
            ),
            abi,
        ),
        Err(reason) => (layer(false, reason), 0),
    };
    HostSupport {
        kernel_release,
        arch: std::env::consts::ARCH.to_string(),
        rlimits: layer(
            true,
            "setrlimit(2): CPU, AS, FSIZE, NOFILE, NPROC, CORE".into(),
        ),
        processes: pids_cgroup::support(),
        no_new_privs: no_new_privs(),
        landlock,
        landlock_abi,
        seccomp: seccomp(),
        user_namespaces: "not used: the sandbox needs no namespaces".into(),
    }
}

fn layer(available: bool, detail: String) -> LayerSupport {
    LayerSupport { available, detail }
}

fn no_new_privs() -> LayerSupport {
    // SAFETY: PR_GET_NO_NEW_PRIVS only reads the flag.
    let rc = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    if rc < 0 {
        layer(
            false,
            format!(
                "prctl(PR_GET_NO_NEW_PRIVS) failed: {}",
                std::io::Error::last_os_error()
            ),
        )
    } else {
        layer(true, "prctl(PR_SET_NO_NEW_PRIVS), Linux 3.5+".into())
    }
}

fn seccomp() -> LayerSupport {
    if let Err(reason) = seccomp_filter::target_arch() {
        return layer(false, reason);
    }
    // PR_GET_SECCOMP fails with EINVAL when the kernel lacks CONFIG_SECCOMP.
    // SAFETY: only reads the calling thread's mode.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode < 0 {
        return layer(
            false,
            format!(
                "this kernel has no seccomp: {}",
                std::io::Error::last_os_error()
            ),
        );
    }
    let filter = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .map(|a| a.split_whitespace().any(|action| action == "errno"))
        .unwrap_or(true);
    if filter {
        layer(
            true,
            format!("seccomp-bpf filter for {}", std::env::consts::ARCH),
        )
    } else {
        layer(false, "seccomp has no errno action on this kernel".into())
    }
}
