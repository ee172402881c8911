//! Opening a sled database, waiting out a lock its previous owner in this
//! process is still letting go of.
//!
//! sled releases its file lock from background threads a moment after the
//! last handle drops, so reopening a database in the same process (a
//! registry reopened on reload, a session store reopened) can see its own
//! lock. A lock held by another process stays and is reported as such.

use std::time::{Duration, Instant};

/// How long a lock may take to go before it counts as held.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Whether `e` is sled's "the file is locked" (it reports it only as text).
pub fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Opens `config`, retrying a lock error for up to [`LOCK_WAIT`].
pub fn open(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}
