//! The inference threads: the caller plus `threads - 1` persistent workers
//! that split each parallel step between them.
//!
//! A decode step of the default model is ~150 small parallel steps (five
//! per layer) of 20–100 µs each, so waking threads through the OS for each
//! one would cost as much as the work. Workers therefore spin on an atomic
//! for a short while after each step and only then sleep on a condvar.
//! Items are handed out one at a time from a shared counter, so a worker
//! the OS has descheduled only delays the items it already took; the caller
//! returns as soon as every item is done.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps.
const SPIN: Duration = Duration::from_millis(2);
/// Bits of the packed state word: epoch | item count | next item.
const IDX_BITS: u32 = 22;
const IDX_MASK: u64 = (1 << IDX_BITS) - 1;

type Task = dyn Fn(usize) + Sync;

struct Shared {
    /// `epoch << 44 | n_items << 22 | next_item`: one word, so a worker
    /// can only claim an item of the step it read the task for.
    state: AtomicU64,
    /// The current step's task; written by the caller only while no item
    /// is claimable, read by workers only after claiming an item.
    task: UnsafeCell<Option<&'static Task>>,
    done: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
}

// SAFETY: `task` is the only non-Sync field; the protocol above (written
// before the state word is published with Release, read after a successful
// AcqRel claim, never rewritten while an item is outstanding) orders every
// access.
unsafe impl Sync for Shared {}

fn unpack(s: u64) -> (u64, usize, usize) {
    (
        s >> (2 * IDX_BITS),
        ((s >> IDX_BITS) & IDX_MASK) as usize,
        (s & IDX_MASK) as usize,
    )
}

impl Shared {
    /// Claims and runs items of step `epoch` until none are left.
    fn work(&self, epoch: u64) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (e, n, next) = unpack(s);
            if e != epoch || next >= n {
                return;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: item `next` of this epoch is claimed and not yet
                    // done, so the caller is still inside `run` and the task
                    // it stored for this epoch is alive and unchanged.
                    let task = unsafe { *self.task.get() };
                    if let Some(task) = task {
                        if let Err(p) = catch_unwind(AssertUnwindSafe(|| task(next))) {
                            if let Ok(mut slot) = self.panic.lock() {
                                slot.get_or_insert(p);
                            }
                        }
                    }
                    self.done.fetch_add(1, Ordering::Release);
                    s = self.state.load(Ordering::Acquire);
                }
                Err(current) => s = current,
            }
        }
    }
}

/// A raw output pointer for pool items that each write their own, disjoint
/// part of one buffer (a head, a block of rows) — what `&mut` cannot
/// express across the items of one [`Pool::run`].
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);

impl Out {
    /// The pointer; a method, so closures capture the Send + Sync wrapper.
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: used only inside one `Pool::run` whose items write disjoint
// elements of a buffer that outlives the call.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

/// A fixed set of inference threads.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// `run` must not be entered from two threads at once: not Sync.
    _not_sync: PhantomData<Cell<()>>,
}

impl Pool {
    /// A pool of `threads` threads in all (the caller is one of them).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            task: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let workers = (1..threads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("candle-worker-{i}"))
                    .spawn(move || worker(&shared))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool {
            shared,
            workers,
            _not_sync: PhantomData,
        })
    }

    /// Threads in all, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `task(i)` for every `i < n`, spread over the threads, and
    /// returns when all are done. A panic in a task is re-raised here.
    pub fn run(&self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || n <= 1 {
            (0..n).for_each(task);
            return;
        }
        assert!(n as u64 <= IDX_MASK, "too many pool items: {n}");
        // Only one thread at a time gets here (the pool is not Sync).
        let epoch = self.next_epoch();
        let shared = &*self.shared;
        // SAFETY: erasing the lifetime is sound because this function does
        // not return before `done == n`, i.e. before every claimed item has
        // finished calling `task`, and no item can be claimed afterwards
        // (the state's item counter is exhausted and the next step
        // overwrites the slot only after publishing nothing claimable).
        let task: &'static Task =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Task>(task) };
        // SAFETY: no item is claimable now (the previous step's counter is
        // exhausted), so no worker reads the slot concurrently.
        unsafe { *shared.task.get() = Some(task) };
        shared.done.store(0, Ordering::Relaxed);
        shared.state.store(
            (epoch << (2 * IDX_BITS)) | ((n as u64) << IDX_BITS),
            Ordering::SeqCst,
        );
        if shared.sleeping.load(Ordering::SeqCst) > 0 {
            let _guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        shared.work(epoch);
        let mut spins = 0u32;
        while shared.done.load(Ordering::Acquire) < n {
            spins += 1;
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let panic = shared.panic.lock().ok().and_then(|mut p| p.take());
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    fn next_epoch(&self) -> u64 {
        // The epoch lives in the state word; read it back from there.
        let (e, _, _) = unpack(self.shared.state.load(Ordering::Relaxed));
        (e + 1) & ((1 << (64 - 2 * IDX_BITS)) - 1)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let epoch = self.next_epoch();
        self.shared
            .state
            .store(epoch << (2 * IDX_BITS), Ordering::SeqCst);
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for a new step: spin first, then sleep.
        let started = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let (e, _, _) = unpack(shared.state.load(Ordering::Acquire));
            if e != seen || shared.shutdown.load(Ordering::Relaxed) {
                break e;
            }
            spins += 1;
            if spins.is_multiple_of(256) && started.elapsed() > SPIN {
                let mut guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
                shared.sleeping.fetch_add(1, Ordering::SeqCst);
                while unpack(shared.state.load(Ordering::SeqCst)).0 == seen
                    && !shared.shutdown.load(Ordering::SeqCst)
                {
                    guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                shared.sleeping.fetch_sub(1, Ordering::SeqCst);
            } else {
                std::hint::spin_loop();
            }
        };
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        seen = epoch;
        shared.work(epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_exactly_once_across_many_steps() {
        let pool = Pool::new(3).unwrap();
        let counts: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        for step in 0..2000 {
            let n = 1 + step % 50;
            pool.run(n, &|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        let total: usize = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        assert_eq!(total, (0..2000).map(|s| 1 + s % 50).sum::<usize>());
        // After the spin period the workers sleep; a new step wakes them.
        std::thread::sleep(SPIN * 3);
        let hits = AtomicUsize::new(0);
        pool.run(64, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn a_panicking_item_is_reraised_in_the_caller() {
        let pool = Pool::new(2).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|i| assert!(i != 5, "item five"));
        }));
        assert!(result.is_err());
        // The pool still works afterwards.
        let hits = AtomicUsize::new(0);
        pool.run(8, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 8);
    }
}
