//! The process-level steps around the layers: the program to run (looked
//! up and turned into C strings before anything is limited), the process
//! group, `no_new_privs`, and the final `execve`.
//!
//! Must never leak a descriptor into the program: every descriptor above
//! stderr is marked close-on-exec right before `execve`.

use std::ffi::{CString, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{SetupFailure, SetupStage, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED};

use super::environment::{self, Environment};
use super::failure;

/// Where the program looks when the environment has no `PATH`.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A program ready for `execve`.
pub struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Program {
    /// `args[0]` found on the scrubbed environment's `PATH` (unless it has
    /// a `/`), with its arguments and environment as C strings.
    pub fn prepare(args: &[OsString], env: &Environment) -> Result<Self, SetupFailure> {
        let Some(name) = args.first() else {
            return Err(failure(
                SetupStage::Arguments,
                "no program given: use `skillkernel sandbox-exec [OPTIONS] -- PROGRAM ARGS…`",
            ));
        };
        let path = if name.as_bytes().contains(&b'/') {
            PathBuf::from(name)
        } else {
            let search = environment::get(env, "PATH")
                .map(|p| p.to_os_string())
                .unwrap_or_else(|| FALLBACK_PATH.into());
            lookup(name, &search).ok_or_else(|| SetupFailure {
                stage: SetupStage::Exec,
                message: format!(
                    "program {:?} not found on PATH {:?}",
                    name.to_string_lossy(),
                    search.to_string_lossy()
                ),
                exit_code: EXIT_NOT_FOUND,
            })?
        };
        let c = |bytes: Vec<u8>| {
            CString::new(bytes)
                .map_err(|_| failure(SetupStage::Arguments, "an argument contains a NUL byte"))
        };
        let argv = args
            .iter()
            .map(|a| c(a.as_bytes().to_vec()))
            .collect::<Result<_, _>>()?;
        let envp = env
            .iter()
            .map(|(n, v)| {
                let mut pair = n.clone().into_vec();
                pair.push(b'=');
                pair.extend_from_slice(v.as_bytes());
                c(pair)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path: c(path.into_os_string().into_vec())?,
            argv,
            envp,
        })
    }

    /// The program's path, for reports.
    pub fn display(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Closes (on exec) every descriptor above stderr and executes the
    /// program; returns only the failure.
    pub fn exec(self) -> SetupFailure {
        mark_descriptors_close_on_exec();
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.envp.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: path, argv and envp are NUL-terminated C strings that
        // outlive the call; both arrays end with a null pointer.
        unsafe { libc::execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let error = std::io::Error::last_os_error();
        let exit_code = match error.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOEXEC) => EXIT_NOT_EXECUTABLE,
            _ => EXIT_SETUP_FAILED,
        };
        SetupFailure {
            stage: SetupStage::Exec,
            message: format!("cannot execute {}: {error}", self.display()),
            exit_code,
        }
    }
}

fn lookup(name: &OsString, search: &std::ffi::OsStr) -> Option<PathBuf> {
    search
        .as_bytes()
        .split(|b| *b == b':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(std::ffi::OsStr::from_bytes(dir)).join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// How the program got its own process group.
#[derive(Debug, Clone, Copy)]
pub enum ProcessGroup {
    /// The helper called `setsid`: new session, new group, no terminal.
    NewSession,
    /// The parent had already made the helper a group leader (spawned
    /// with `process_group(0)`), where `setsid` is not allowed.
    GroupLeader,
}

impl fmt::Display for ProcessGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NewSession => "new_session",
            Self::GroupLeader => "group_leader",
        })
    }
}

/// Makes the helper (and so the program) lead its own process group.
pub fn enter_own_process_group() -> Result<ProcessGroup, SetupFailure> {
    if nix::unistd::setsid().is_ok() {
        return Ok(ProcessGroup::NewSession);
    }
    if nix::unistd::getpgrp() == nix::unistd::getpid() {
        return Ok(ProcessGroup::GroupLeader);
    }
    Err(failure(
        SetupStage::ProcessGroup,
        "cannot start a new session or process group",
    ))
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: no set-uid or file-capability gains
/// across `execve`, for the program and all its descendants.
pub fn set_no_new_privs() -> Result<(), SetupFailure> {
    // SAFETY: plain prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(failure(
            SetupStage::NoNewPrivs,
            format!(
                "prctl(PR_SET_NO_NEW_PRIVS) failed: {}",
                std::io::Error::last_os_error()
            ),
        ))
    }
}

/// Marks every descriptor above 2 close-on-exec: `close_range` (Linux
/// 5.11+), else one `fcntl` per possible descriptor.
fn mark_descriptors_close_on_exec() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with the CLOEXEC flag only sets descriptor flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return;
    }
    for fd in 3..65_536 {
        // SAFETY: fcntl on a descriptor that may not exist just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}
