//! `--daemon`: the classic double fork, done before any thread exists.
//!
//! The launching process forks; the child calls `setsid` (a new session,
//! no controlling terminal) and forks again so the daemon can never
//! reacquire one; the grandchild changes to `/`, sets umask 027 and points
//! stdio at the log (or /dev/null). The launcher does not exit at once: it
//! waits on a pipe until the daemon reports that it serves (connection file
//! written) or why it could not, and exits 0 or non-zero accordingly — so
//! `Type=forking` units see readiness, and a failed start fails
//! `systemctl start` with the reason in the journal.
//!
//! This must run before the tokio runtime and the logging threads exist:
//! `fork` copies only the calling thread.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{fork, setsid, ForkResult};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DaemonizeError {
    #[error("cannot detach into the background ({what}): {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
    #[error("cannot open {path} for the daemon's output: {source}")]
    Stdio {
        path: String,
        source: std::io::Error,
    },
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> DaemonizeError {
    move |source| DaemonizeError::Sys { what, source }
}

/// The daemon's end of the readiness pipe.
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// Foreground mode: nobody waits.
    pub fn none() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the launcher the kernel serves; it exits 0.
    pub fn ready(&mut self, connection_file: &Path) {
        self.send(&format!(
            "READY {} {}\n",
            std::process::id(),
            connection_file.display()
        ));
    }

    /// Tells the launcher why the start failed; it exits 1.
    pub fn failed(&mut self, reason: &str) {
        self.send(&format!("ERROR {}\n", reason.replace('\n', " ")));
    }

    fn send(&mut self, line: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            // The launcher may have been killed; nothing to do about it.
            let _ = pipe.write_all(line.as_bytes());
        }
    }
}

/// Detaches into the background. Returns only in the daemon; the launching
/// process waits for readiness and exits from here with the daemon's
/// verdict. `output` receives the daemon's stdout and stderr (what is
/// printed outside the log, e.g. a panic); `None` means /dev/null.
pub fn detach(output: Option<&Path>) -> Result<Readiness, DaemonizeError> {
    // Opened before forking so that an unwritable path fails the launcher
    // with a plain error rather than a silent daemon.
    let out = match output {
        Some(path) => OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| DaemonizeError::Stdio {
                path: path.display().to_string(),
                source,
            })?,
        None => dev_null()?,
    };
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: no other thread exists yet (this runs before the runtime and
    // the log writer start), so the child's copy of the process is whole.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let code = wait_for_daemon(read_end);
            // The middle child exits right after its fork; reap it.
            let _ = nix::sys::wait::waitpid(child, None);
            // Exit without running destructors: the PID file's lock is
            // shared with the daemon and must not be released here.
            std::process::exit(code);
        }
        ForkResult::Child => {}
    }
    drop(read_end);
    setsid().map_err(sys("setsid"))?;
    // SAFETY: still single-threaded (see above).
    match unsafe { fork() }.map_err(sys("second fork"))? {
        // SAFETY: `_exit` skips atexit handlers and destructors, which
        // belong to the launcher's copy of this state, not to us.
        ForkResult::Parent { .. } => unsafe { nix::libc::_exit(0) },
        ForkResult::Child => {}
    }
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    nix::sys::stat::umask(Mode::from_bits_truncate(0o027));
    let null = dev_null()?;
    redirect(&null, 0)?;
    redirect(&out, 1)?;
    redirect(&out, 2)?;
    Ok(Readiness {
        pipe: Some(File::from(write_end)),
    })
}

fn dev_null() -> Result<File, DaemonizeError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| DaemonizeError::Stdio {
            path: "/dev/null".into(),
            source,
        })
}

fn redirect(file: &File, fd: i32) -> Result<(), DaemonizeError> {
    // SAFETY: dup2 onto a standard descriptor this process owns.
    let rc = unsafe { nix::libc::dup2(file.as_fd().as_raw_fd(), fd) };
    if rc < 0 {
        return Err(DaemonizeError::Sys {
            what: "redirect stdio",
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// The launcher's side: reads the daemon's verdict and returns the exit code.
fn wait_for_daemon(read_end: OwnedFd) -> i32 {
    let mut text = String::new();
    // EOF comes when the daemon reported (it closes its end) or died.
    let _ = File::from(read_end).read_to_string(&mut text);
    match text.lines().next() {
        Some(line) if line.starts_with("READY ") => {
            let mut parts = line["READY ".len()..].splitn(2, ' ');
            let pid = parts.next().unwrap_or("?");
            let file = parts.next().unwrap_or("?");
            println!("skillkernel: serving as pid {pid}; connection file {file}");
            0
        }
        Some(line) if line.starts_with("ERROR ") => {
            eprintln!("skillkernel: {}", &line["ERROR ".len()..]);
            1
        }
        _ => {
            eprintln!(
                "skillkernel: the daemon exited before it was ready; see its log \
                 (--log-dir) or run in the foreground without --daemon"
            );
            1
        }
    }
}
