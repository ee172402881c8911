//! seccomp, two walls and nothing more (it is not a general syscall
//! policy):
//!
//! * **the process group**: `setsid` and `setpgid` fail with `EACCES`, so
//!   the program cannot leave the group the parent kills on timeout or
//!   interrupt (always installed);
//! * **the network**, unless the policy grants it: `socket(2)` fails with
//!   `EACCES` for every address family but `AF_UNIX` (local pipes and
//!   sockets keep working), and so does `io_uring_setup` (io_uring can
//!   open sockets without `socket(2)`).
//!
//! Architecture-aware: the filter is compiled for the running architecture
//! (seccompiler checks it in the filter and kills a mismatching caller). On
//! x86_64 the x32 ABI, which has its own syscall numbers, is refused as a
//! whole. Must never be installed without `no_new_privs` already set.

use std::collections::BTreeMap;
use std::fmt;

use crate::{SetupFailure, SetupStage};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use super::failure;

/// What was installed: which network walls.
#[derive(Debug, Clone, Copy)]
pub enum SeccompOutcome {
    /// Group and network walls.
    Denied,
    /// Network by host: the group wall, and sockets of `AF_UNIX`,
    /// `AF_INET`, `AF_INET6` and `AF_NETLINK` only (the run's network
    /// namespace holds only `lo`; families it does not separate, such as
    /// `AF_VSOCK`, stay shut).
    ByHost,
    /// Network granted: the process-group wall only.
    Allowed,
}

/// Which sockets a program may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sockets {
    UnixOnly,
    Inet,
    Any,
}

impl fmt::Display for SeccompOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Denied => "network_denied",
            Self::ByHost => "network_by_host",
            Self::Allowed => "network_allowed",
        })
    }
}

/// The architecture the filter is compiled for, or why none.
pub fn target_arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        format!(
            "seccompiler has no filter for {} (x86_64, aarch64, riscv64 only)",
            std::env::consts::ARCH
        )
    })
}

/// Installs the filter: the group wall, and the network wall as far as
/// `sockets` says.
pub fn install(sockets: Sockets) -> Result<SeccompOutcome, SetupFailure> {
    let fail = |e: String| failure(SetupStage::Seccomp, e);
    let arch = target_arch().map_err(fail)?;
    let program = filter(arch, sockets).map_err(fail)?;
    seccompiler::apply_filter(&program)
        .map_err(|e| fail(format!("cannot install the seccomp filter: {e}")))?;
    Ok(match sockets {
        Sockets::UnixOnly => SeccompOutcome::Denied,
        Sockets::Inet => SeccompOutcome::ByHost,
        Sockets::Any => SeccompOutcome::Allowed,
    })
}

/// The compiled filter for `arch`.
fn filter(arch: TargetArch, sockets: Sockets) -> Result<BpfProgram, String> {
    let families: &[i32] = match sockets {
        Sockets::UnixOnly => &[libc::AF_UNIX],
        Sockets::Inet => &[
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
        ],
        Sockets::Any => &[],
    };
    // Refused when the family is none of `families` (conditions AND).
    let others = families
        .iter()
        .map(|f| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, *f as u64))
        .collect::<Result<Vec<_>, _>>()
        .and_then(SeccompRule::new)
        .map_err(|e| e.to_string());
    // An empty rule list matches the syscall unconditionally.
    let mut rules = BTreeMap::from([(libc::SYS_setsid, vec![]), (libc::SYS_setpgid, vec![])]);
    if sockets != Sockets::Any {
        rules.insert(libc::SYS_socket, vec![others?]);
        rules.insert(libc::SYS_io_uring_setup, vec![]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| format!("cannot compile the seccomp filter: {e}"))?;
    let mut program = x32_guard(arch);
    program.extend(filter);
    Ok(program)
}

/// On x86_64, refuses x32 syscalls (numbers with bit 30 set), which the
/// per-number rules above would not see.
fn x32_guard(arch: TargetArch) -> BpfProgram {
    if arch != TargetArch::x86_64 {
        return Vec::new();
    }
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    vec![
        // A = seccomp_data.nr
        sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
    ]
}
