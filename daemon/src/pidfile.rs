//! The PID file, held under an exclusive `flock` for the daemon's life.
//!
//! The lock, not the number in the file, says whether a daemon runs: a
//! file left by a crashed daemon (or naming a PID the system has since
//! reused for another program) is unlocked, so it is replaced; a file
//! locked by a live daemon refuses a second one. The lock belongs to the
//! open file description, so it survives `--daemon`'s forks and goes away
//! with the last process holding it, however that process ends.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PidFileError {
    #[error("cannot open the PID file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another skillkernel daemon{} holds the PID file {path}; stop it first \
         (`skillkernel stop --pid-file {path}`) or choose another --pid-file",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held { path: PathBuf, pid: Option<i32> },
    #[error("cannot lock the PID file {path}: {source}")]
    Lock { path: PathBuf, source: nix::Error },
    #[error("cannot write the PID file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A locked PID file. Dropping it deletes the file and then releases the
/// lock, on every way out of the daemon (a failed start included); only
/// `--daemon`'s launcher, which shares the lock, leaves without dropping it.
pub struct PidFile {
    path: PathBuf,
    file: Flock<File>,
}

impl PidFile {
    /// Opens (creating it and its directory) and locks `path`, or says who
    /// holds it.
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| PidFileError::Open {
                path: path.to_owned(),
                source,
            })?;
        }
        // O_CLOEXEC (std's default) keeps `!command` children from holding
        // the lock after the daemon exits.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|source| PidFileError::Open {
                path: path.to_owned(),
                source,
            })?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(PidFileError::Held {
                    path: path.to_owned(),
                    pid: read_pid(&mut file),
                })
            }
            Err((_, source)) => {
                return Err(PidFileError::Lock {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        if let Some(old) = read_pid(&mut file) {
            tracing::warn!(
                path = %path.display(),
                old_pid = old,
                "replacing a stale PID file (its daemon is gone)"
            );
        }
        Ok(PidFile {
            path: path.to_owned(),
            file,
        })
    }

    /// Writes `pid` (the daemon's own, after its forks) into the file.
    pub fn write_pid(&mut self, pid: u32) -> Result<(), PidFileError> {
        let err = |source| PidFileError::Write {
            path: self.path.clone(),
            source,
        };
        self.file.set_len(0).map_err(err)?;
        self.file.seek(SeekFrom::Start(0)).map_err(err)?;
        self.file
            .write_all(format!("{pid}\n").as_bytes())
            .map_err(err)?;
        self.file.sync_all().map_err(err)
    }

    /// Deletes the file and releases the lock.
    pub fn remove(self) {
        drop(self);
    }
}

impl Drop for PidFile {
    /// Deletes the file while still holding the lock, so a new daemon never
    /// finds our file unlocked and half-removed; the lock goes with `file`.
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the PID file");
        }
    }
}

fn read_pid(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|p| *p > 0)
}

/// What a PID file says about its daemon, for `stop`, `status`, `reload`
/// and `dump`.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    /// A daemon holds the lock; this is its PID.
    Running(i32),
    /// The file exists but nobody holds it (the daemon died).
    Stale(Option<i32>),
    /// No file.
    Missing,
}

/// Finds out whether a daemon holds `path`, without disturbing it.
pub fn holder(path: &Path) -> Result<Holder, PidFileError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Holder::Missing),
        Err(source) => {
            return Err(PidFileError::Open {
                path: path.to_owned(),
                source,
            })
        }
    };
    let pid = read_pid(&mut file);
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // We got it, so nobody holds it; dropping releases it at once.
        Ok(_probe) => Ok(Holder::Stale(pid)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => match pid {
            Some(pid) => Ok(Holder::Running(pid)),
            // Locked but not yet written: the daemon is starting.
            None => Ok(Holder::Stale(None)),
        },
        Err((_, source)) => Err(PidFileError::Lock {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_file_refuses_a_second_holder_and_names_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/skillkernel.pid");
        let mut first = PidFile::acquire(&path).unwrap();
        first.write_pid(4242).unwrap();
        assert_eq!(holder(&path).unwrap(), Holder::Running(4242));
        let e = PidFile::acquire(&path)
            .err()
            .expect("second acquire refused");
        assert!(
            matches!(
                e,
                PidFileError::Held {
                    pid: Some(4242),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("pid 4242"), "{e}");
        first.remove();
        assert_eq!(holder(&path).unwrap(), Holder::Missing);
    }

    #[test]
    fn a_stale_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skillkernel.pid");
        std::fs::write(&path, "999999\n").unwrap();
        assert_eq!(holder(&path).unwrap(), Holder::Stale(Some(999999)));
        let mut pid_file = PidFile::acquire(&path).unwrap();
        pid_file.write_pid(7).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "7\n");
    }
}
