//! Where MCP clients' work runs: a runtime of its own, on one thread at a
//! lower CPU priority (nice 10; its blocking threads inherit it). However
//! many agents call skills at once, a notebook's cells — served on the
//! kernel's runtime, at normal priority — come first: the OS runs them
//! as soon as they are ready, and they never queue behind MCP tasks.
//!
//! Started on first use, it lives as long as the process.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The nice value of the worker (0 is normal; 19 the lowest priority).
pub const NICE: i32 = 10;

static WORKER: OnceLock<Handle> = OnceLock::new();

/// Runs `work` on the worker.
pub fn spawn<F>(work: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(work)
}

/// The worker's runtime (started now if it is not yet). Should its
/// thread not start, the work runs on the caller's runtime instead.
pub fn handle() -> Handle {
    WORKER.get_or_init(start).clone()
}

fn start() -> Handle {
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new()
        .name("mcp-worker".into())
        .spawn(move || {
            lower_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("mcp-worker-blocking")
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::warn!(error = %e, "no runtime for MCP work; it runs beside the kernel's");
                    return;
                }
            };
            let _ = tx.send(runtime.handle().clone());
            // Parks the thread, driving the runtime, for the process's life.
            runtime.block_on(std::future::pending::<()>());
        });
    match started.ok().and_then(|_| rx.recv().ok()) {
        Some(handle) => handle,
        None => Handle::current(),
    }
}

/// Lowers this thread's CPU priority (Linux: per thread).
fn lower_priority() {
    // SAFETY: plain syscalls on this thread's own id.
    let done = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE)
    };
    if done != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the MCP worker's priority"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_thread_of_lower_priority() {
        let nice = spawn(async {
            // SAFETY: reads this thread's own priority.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::getpriority(libc::PRIO_PROCESS, tid)
            }
        })
        .await
        .unwrap();
        let here = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        };
        assert_eq!(nice, here + NICE);
    }
}
