//! The status descriptor: one JSON line per event, written with plain
//! `write(2)` on a descriptor the parent passed (see
//! `crate::report` for the protocol).
//!
//! Must never panic or allocate much: it also reports failures of the
//! layers themselves, after the rlimits are in place.

use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use crate::StatusLine;

/// Where status lines go: the parent's descriptor, or (failures only)
/// stderr.
pub struct StatusSink {
    fd: Option<i32>,
}

impl StatusSink {
    pub fn new(fd: Option<i32>) -> Self {
        Self { fd }
    }

    /// Writes `line`; a parent that went away is not an error worth
    /// reporting (there is nobody to report it to).
    pub fn send(&self, line: &StatusLine) {
        let Ok(mut json) = serde_json::to_string(line) else {
            return;
        };
        json.push('\n');
        match self.fd {
            Some(fd) => {
                // Borrowed, not owned: the descriptor must survive until
                // exec closes it (close-on-exec) or the helper exits.
                // SAFETY: the parent passed `fd` open for us to write to;
                // ManuallyDrop keeps us from closing it.
                let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
                let _ = file.write_all(json.as_bytes());
            }
            None if matches!(line, StatusLine::Failed(_)) => {
                let _ = std::io::stderr()
                    .write_all(format!("skillkernel sandbox-exec: {json}").as_bytes());
            }
            None => {}
        }
    }
}

/// Reads an inherited descriptor to EOF and closes it.
pub fn read_fd_to_end(fd: i32) -> std::io::Result<String> {
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above) and handed to us by the parent;
    // nothing else in the helper uses it.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}
