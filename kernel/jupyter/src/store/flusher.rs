//! The flusher: one OS thread that writes the session store to disk after
//! changes, so that replies never wait for an fsync and no tokio worker
//! blocks on one.
//!
//! Writers bump a generation counter and wake the thread; the thread
//! flushes once for however many wake-ups arrived meanwhile (a burst of
//! changes costs one fsync, not one each) and records the generation it
//! covered. The difference is what `kill -9` would lose right now.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::StoreError;
use skillkernel_stdx::lock;

#[derive(Default)]
struct Counters {
    /// Changes made so far.
    requested: u64,
    /// Changes known to be on disk.
    flushed: u64,
    stop: bool,
}

#[derive(Default)]
struct Signal {
    counters: Mutex<Counters>,
    wake: Condvar,
}

/// Handle to the flusher thread; dropping it stops the thread after a
/// last flush.
pub(super) struct Flusher {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread. `flush` writes the store to disk; `on_error`
    /// hears of a failed flush (the thread keeps running, so a later
    /// change is tried again).
    pub(super) fn start(
        flush: impl Fn() -> Result<(), StoreError> + Send + 'static,
        on_error: impl Fn(StoreError) + Send + 'static,
    ) -> std::io::Result<Flusher> {
        let signal = Arc::new(Signal::default());
        let thread_signal = signal.clone();
        let thread = std::thread::Builder::new()
            .name("skillkernel-flush".into())
            .spawn(move || run(&thread_signal, flush, on_error))?;
        Ok(Flusher {
            signal,
            thread: Some(thread),
        })
    }

    /// Notes a change and wakes the thread.
    pub(super) fn changed(&self) {
        lock(&self.signal.counters).requested += 1;
        self.signal.wake.notify_one();
    }

    /// The changes made so far; pass to [`Flusher::flushed_through`] after
    /// flushing on another thread.
    pub(super) fn generation(&self) -> u64 {
        lock(&self.signal.counters).requested
    }

    /// Records that everything up to `generation` is on disk.
    pub(super) fn flushed_through(&self, generation: u64) {
        let mut c = lock(&self.signal.counters);
        c.flushed = c.flushed.max(generation);
    }

    /// Changes not yet on disk.
    pub(super) fn unsaved(&self) -> u64 {
        let c = lock(&self.signal.counters);
        c.requested.saturating_sub(c.flushed)
    }
}

fn run(signal: &Signal, flush: impl Fn() -> Result<(), StoreError>, on_error: impl Fn(StoreError)) {
    let mut counters = lock(&signal.counters);
    loop {
        while counters.requested == counters.flushed && !counters.stop {
            counters = signal
                .wake
                .wait(counters)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if counters.requested == counters.flushed && counters.stop {
            return;
        }
        let target = counters.requested;
        let stopping = counters.stop;
        drop(counters);
        let result = flush();
        counters = lock(&signal.counters);
        match result {
            Ok(()) => counters.flushed = counters.flushed.max(target),
            Err(e) => {
                on_error(e);
                // Not on disk, but retrying at once would spin: the next
                // change tries again.
                counters.flushed = counters.flushed.max(target);
                if stopping {
                    return;
                }
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        lock(&self.signal.counters).stop = true;
        self.signal.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The last flush is short; waiting for it keeps a clean exit
            // from losing the final changes.
            let _ = thread.join();
        }
    }
}
