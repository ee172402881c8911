//! Landlock: the filesystem allow-lists (read; write; the workspace), and,
//! when network is denied and the kernel has ABI 4+, a second wall against
//! TCP connect/bind. ABI 6+ also scopes signals and abstract UNIX sockets
//! to the sandbox (the program cannot signal the daemon).
//!
//! Best effort by design: what the running kernel cannot enforce is
//! reported (`fully_enforced`, `partially_enforced`, `not_enforced` and
//! why), and the policy's `require_landlock` turns less than full into a
//! refusal. It must never silently claim enforcement it did not get.

use std::path::PathBuf;

use crate::{LandlockOutcome, SandboxPolicy, SetupFailure, SetupStage};
use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};

use super::failure;

/// The newest ABI whose rights the sandbox asks for.
const WANTED_ABI: ABI = ABI::V6;
const WANTED_ABI_NUMBER: u32 = 6;

/// The Landlock ABI the running kernel offers, or why there is none.
pub fn kernel_abi() -> Result<u32, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with the VERSION flag and no attributes the call only
    // returns the ABI number (or an error); it creates nothing.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi >= 0 {
        return Ok(abi as u32);
    }
    Err(match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => {
            "Landlock is built in but disabled: add `landlock` to the `lsm=` boot parameter"
                .to_string()
        }
        Some(libc::ENOSYS) => {
            "this kernel has no Landlock (needs Linux 5.13+ with CONFIG_SECURITY_LANDLOCK)"
                .to_string()
        }
        _ => format!(
            "landlock_create_ruleset failed: {}",
            std::io::Error::last_os_error()
        ),
    })
}

/// Restricts the helper (and so the program) to `read` and `write`: the
/// policy's paths (`write` with the workspace) once its denied paths are
/// hidden.
pub fn restrict(
    policy: &SandboxPolicy,
    read: &[PathBuf],
    write: &[PathBuf],
) -> Result<LandlockOutcome, SetupFailure> {
    let (abi, unavailable) = match kernel_abi() {
        Ok(abi) => (abi, None),
        Err(reason) => (0, Some(reason)),
    };
    let (read, missing_read) = existing(read);
    let (write, missing_write) = existing(write);
    // By host, TCP is denied but to the bridge's port.
    let tcp_denied = !policy.network && !policy.network_by_host() && abi >= 4;
    let net = if policy.network {
        Net::Open
    } else if policy.network_by_host() {
        Net::Port(crate::proxy::PROXY_PORT)
    } else {
        Net::Closed
    };
    let status = apply(&read, &write, net).map_err(|e| {
        failure(
            SetupStage::Landlock,
            format!("cannot apply Landlock rules: {e}"),
        )
    })?;
    let (status, reason) = match status {
        RulesetStatus::FullyEnforced => ("fully_enforced", None),
        RulesetStatus::PartiallyEnforced => (
            "partially_enforced",
            Some(format!(
                "the kernel offers Landlock ABI {abi}, the sandbox asks for ABI {WANTED_ABI_NUMBER}: \
                 newer rights (file truncation, TCP, ioctl, scopes) are not all enforced"
            )),
        ),
        RulesetStatus::NotEnforced => (
            "not_enforced",
            Some(unavailable.unwrap_or_else(|| "the kernel enforced no rule".to_string())),
        ),
    };
    if policy.require_landlock && status != "fully_enforced" {
        return Err(failure(
            SetupStage::Landlock,
            format!(
                "the policy requires Landlock but it is {status}: {}",
                reason.as_deref().unwrap_or("")
            ),
        ));
    }
    Ok(LandlockOutcome {
        status: status.to_string(),
        abi,
        tcp_denied,
        missing_paths: missing_read.into_iter().chain(missing_write).collect(),
        reason,
    })
}

/// What TCP the program may use.
#[derive(Clone, Copy)]
enum Net {
    Open,
    Closed,
    /// Connect to this port only (the proxy bridge's, by host).
    Port(u16),
}

fn apply(read: &[PathBuf], write: &[PathBuf], net: Net) -> Result<RulesetStatus, RulesetError> {
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(WANTED_ABI))?
        .scope(Scope::from_all(WANTED_ABI))?;
    if !matches!(net, Net::Open) {
        // Handled: every TCP connect and bind is denied but by a rule.
        ruleset = ruleset.handle_access(AccessNet::from_all(WANTED_ABI))?;
    }
    let mut created = ruleset
        .create()?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(WANTED_ABI)))?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(WANTED_ABI)))?;
    if let Net::Port(port) = net {
        created = created.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
    }
    Ok(created.restrict_self()?.ruleset)
}

/// Splits `paths` into those that exist and those that do not (no rule
/// can be made for those; they are reported).
fn existing<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    paths.into_iter().cloned().partition(|p| p.exists())
}
