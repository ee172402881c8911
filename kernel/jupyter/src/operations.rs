//! Operations in flight: what the kernel is doing right now.
//!
//! Every piece of work a client started — a cell, a model pull — holds an
//! [`OperationGuard`] while it runs. The guard registers the operation on
//! creation and removes it when dropped, whatever path the work leaves by
//! (return, error, cancellation, panic), so the shutdown coordinator can
//! wait for the count to reach zero and the state dump can list what is
//! running without anyone remembering to clean up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use skillkernel_stdx::lock;

/// One operation as the dump and `%status` show it (a section of the
/// status reply).
pub use skillkernel_protocol::content::OperationInfo;

struct Entry {
    kind: String,
    msg_id: String,
    started: Instant,
    started_at: SystemTime,
}

struct Inner {
    next_id: AtomicU64,
    running: Mutex<BTreeMap<u64, Entry>>,
    /// How many are running, for waiters.
    count: watch::Sender<usize>,
}

/// The registry of operations in flight. Cheap to clone.
#[derive(Clone)]
pub struct Operations {
    inner: Arc<Inner>,
}

impl Default for Operations {
    fn default() -> Self {
        Operations {
            inner: Arc::new(Inner {
                next_id: AtomicU64::new(1),
                running: Mutex::new(BTreeMap::new()),
                count: watch::channel(0).0,
            }),
        }
    }
}

impl Operations {
    /// Registers an operation; it stays registered while the guard lives.
    pub fn begin(&self, kind: &str, msg_id: &str) -> OperationGuard {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut running = lock(&self.inner.running);
        running.insert(
            id,
            Entry {
                kind: kind.to_owned(),
                msg_id: msg_id.to_owned(),
                started: Instant::now(),
                started_at: SystemTime::now(),
            },
        );
        self.inner.count.send_replace(running.len());
        OperationGuard {
            inner: self.inner.clone(),
            id,
        }
    }

    /// How many operations are running.
    pub fn count(&self) -> usize {
        *self.inner.count.borrow()
    }

    /// The operations running now, oldest first.
    pub fn list(&self) -> Vec<OperationInfo> {
        lock(&self.inner.running)
            .iter()
            .map(|(id, e)| OperationInfo {
                id: *id,
                kind: e.kind.clone(),
                msg_id: e.msg_id.clone(),
                started_at: chrono::DateTime::<chrono::Utc>::from(e.started_at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                running_secs: e.started.elapsed().as_secs_f64(),
            })
            .collect()
    }

    /// Waits until nothing runs, or `limit` passes. Returns whether the
    /// registry drained.
    pub async fn drained(&self, limit: Duration) -> bool {
        let mut count = self.inner.count.subscribe();
        tokio::time::timeout(limit, count.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Keeps one operation registered; dropping it ends the operation.
pub struct OperationGuard {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for OperationGuard {
    fn drop(&mut self) {
        let mut running = lock(&self.inner.running);
        running.remove(&self.id);
        self.inner.count.send_replace(running.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_guard_registers_until_dropped_even_on_early_exit() {
        let ops = Operations::default();
        let first = ops.begin("execute_request", "m1");
        {
            let _second = ops.begin("model_request", "m2");
            assert_eq!(ops.count(), 2);
            let kinds: Vec<String> = ops.list().into_iter().map(|o| o.kind).collect();
            assert_eq!(kinds, ["execute_request", "model_request"]);
        }
        assert_eq!(ops.count(), 1);
        assert!(!ops.drained(Duration::from_millis(20)).await);
        let waiter = tokio::spawn({
            let ops = ops.clone();
            async move { ops.drained(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        assert!(
            waiter.await.unwrap(),
            "waiter wakes when the last guard drops"
        );
        assert!(ops.list().is_empty());
    }
}
