//! Giving memory back after bursts.
//!
//! A burst of pipelined requests queues thousands of decoded messages at
//! once. glibc's allocator keeps the freed memory in its per-thread arenas,
//! so a kernel that once handled a burst would hold it for the rest of its
//! life. When the shell queue drains after enough work, the kernel asks
//! the allocator to return free pages to the system.

/// Requests handled since the last trim that make a trim worthwhile.
const TRIM_AFTER_REQUESTS: u64 = 256;

/// Counts handled requests and trims when the queue has drained.
#[derive(Debug, Default)]
pub(crate) struct Trimmer {
    since_trim: u64,
}

impl Trimmer {
    /// Notes one handled request; `queue_empty` says whether more wait.
    pub(crate) fn handled(&mut self, queue_empty: bool) {
        self.since_trim += 1;
        if queue_empty && self.since_trim >= TRIM_AFTER_REQUESTS {
            self.since_trim = 0;
            // Trimming walks the heap; keep it off the IO threads.
            tokio::task::spawn_blocking(release_free_memory);
        }
    }
}

/// Returns free heap pages to the operating system where the allocator
/// supports it.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and releases the allocator's own
    // free lists; it has no preconditions and is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}
