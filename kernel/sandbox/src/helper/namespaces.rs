//! The run's own namespaces: a mount namespace to hide denied paths in
//! (`hidden.rs`), a network namespace holding only a loopback interface
//! for network by host (`bridge.rs`).
//!
//! Made with one `unshare`: as is when the helper may (root), else
//! inside a new user namespace where the program keeps its own uid and gid
//! (and, having a non-zero uid there, loses every capability at `execve`).
//! Mount changes never reach the host: `/` is made private first.

use std::ffi::CString;

/// What was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// The helper could unshare as it was.
    Privileged,
    /// Inside a new user namespace.
    User,
}

impl Made {
    pub fn as_str(self) -> &'static str {
        match self {
            Made::Privileged => "privileged",
            Made::User => "user",
        }
    }
}

/// Enters new `mount` and/or `network` namespaces.
pub fn enter(mount: bool, network: bool) -> Result<Made, String> {
    let mut flags = 0;
    if mount {
        flags |= libc::CLONE_NEWNS;
    }
    if network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: plain system calls; the helper is single-threaded, which a
    // new user namespace requires.
    let made = if unsafe { libc::unshare(flags) } == 0 {
        Made::Privileged
    } else {
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        if unsafe { libc::unshare(flags | libc::CLONE_NEWUSER) } != 0 {
            return Err(format!(
                "cannot make namespaces for this run (unshare: {}); unprivileged user \
                 namespaces may be off on this host (sysctl kernel.unprivileged_userns_clone, \
                 or AppArmor's kernel.apparmor_restrict_unprivileged_userns)",
                std::io::Error::last_os_error()
            ));
        }
        // setgroups must be denied before an unprivileged gid map.
        let maps = [
            ("/proc/self/setgroups", "deny".to_string()),
            ("/proc/self/uid_map", format!("{uid} {uid} 1")),
            ("/proc/self/gid_map", format!("{gid} {gid} 1")),
        ];
        for (file, text) in maps {
            std::fs::write(file, text).map_err(|e| format!("cannot write {file}: {e}"))?;
        }
        Made::User
    };
    if mount {
        mount_call(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            .map_err(|e| format!("cannot make / private in the run's mount namespace: {e}"))?;
    }
    if network {
        loopback_up().map_err(|e| format!("cannot bring up the run's loopback: {e}"))?;
    }
    Ok(made)
}

/// `mount(2)` with optional source, type and data.
pub fn mount_call(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> std::io::Result<()> {
    let ptr = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a valid C string for the call.
    let result = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sets `lo` up (a new network namespace starts with it down).
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a socket only used for the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = CString::new("lo").unwrap_or_default();
    for (dst, src) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as i16;
    // SAFETY: fd is open; request is a valid ifreq.
    let result = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) };
    let error = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if result == 0 {
        Ok(())
    } else {
        Err(error)
    }
}
