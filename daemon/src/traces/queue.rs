//! The span processor: ended spans go into a bounded queue, and one thread
//! sends them to the collector in batches.
//!
//! Architecture invariant: nothing here blocks the thread that ends a
//! span. A full queue drops the span (counted in the [`Outlet`]); a
//! collector that is down or slow holds up only the export thread, whose
//! every export has a deadline. The SDK's own batch processor also drops,
//! but cannot tell anyone how much: this one counts, for `%status` and
//! the metrics page, and says so once in the log per failing stretch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use skillkernel_stdx::lock;
use skillkernel_stdx::outlet::Outlet;

use super::client::LastError;

/// Spans per export request.
const BATCH: usize = 512;
/// A span waits at most this long for its batch to fill.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// A stretch of queue drops ends only after this long without one.
const QUIET_BEFORE_RECOVERY: Duration = Duration::from_secs(5);

enum Item {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(mpsc::Sender<()>),
}

/// Bounded queue + export thread. See the module docs.
#[derive(Debug)]
pub(super) struct QueueProcessor {
    queue: Mutex<Option<SyncSender<Item>>>,
    outlet: Arc<Outlet>,
    /// Set by `on_end` when a full queue starts dropping; the export
    /// thread logs it (logging from inside the subscriber is avoided).
    queue_full: Arc<AtomicBool>,
    /// When a full queue last dropped a span (ms since `epoch`).
    last_queue_drop: Arc<AtomicU64>,
    epoch: Instant,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    timeout: Duration,
}

impl QueueProcessor {
    pub(super) fn start<E: SpanExporter + 'static>(
        exporter: E,
        capacity: usize,
        timeout: Duration,
        outlet: Arc<Outlet>,
        last_error: LastError,
    ) -> std::io::Result<Self> {
        let (queue, items) = mpsc::sync_channel(capacity.max(1));
        let queue_full = Arc::new(AtomicBool::new(false));
        let last_queue_drop = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let worker = Worker {
            exporter,
            outlet: outlet.clone(),
            queue_full: queue_full.clone(),
            last_queue_drop: last_queue_drop.clone(),
            epoch,
            timeout,
            last_error,
        };
        let handle = std::thread::Builder::new()
            .name("skillkernel-traces".into())
            .spawn(move || worker.run(items))?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            outlet,
            queue_full,
            last_queue_drop,
            epoch,
            worker: Mutex::new(Some(handle)),
            timeout,
        })
    }

    fn sender(&self) -> Option<SyncSender<Item>> {
        lock(&self.queue).clone()
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let Some(queue) = self.sender() else {
            return;
        };
        match queue.try_send(Item::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // +1: zero means "never".
                let now = self.epoch.elapsed().as_millis() as u64 + 1;
                self.last_queue_drop.store(now, Ordering::Relaxed);
                if self.outlet.dropped(
                    1,
                    "the export queue is full: the collector is slower than the spans come",
                ) {
                    self.queue_full.store(true, Ordering::Relaxed);
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let Some(queue) = self.sender() else {
            return Ok(());
        };
        let (done, flushed) = mpsc::channel();
        // Never blocks: with the queue full, the flush is not asked for.
        queue.try_send(Item::Flush(done)).map_err(|e| match e {
            TrySendError::Full(_) => {
                OTelSdkError::InternalFailure("the export queue is full".into())
            }
            TrySendError::Disconnected(_) => OTelSdkError::AlreadyShutdown,
        })?;
        flushed
            .recv_timeout(self.timeout * 2)
            .map_err(|_| OTelSdkError::Timeout(self.timeout * 2))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        // Closing the queue lets the thread export what is left and end.
        let Some(queue) = lock(&self.queue).take() else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        drop(queue);
        let Some(worker) = lock(&self.worker).take() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        while !worker.is_finished() {
            if Instant::now() >= deadline {
                // Left to die with the process rather than hold up exit.
                return Err(OTelSdkError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = worker.join();
        Ok(())
    }
}

struct Worker<E> {
    exporter: E,
    outlet: Arc<Outlet>,
    queue_full: Arc<AtomicBool>,
    last_queue_drop: Arc<AtomicU64>,
    epoch: Instant,
    timeout: Duration,
    last_error: LastError,
}

impl<E: SpanExporter> Worker<E> {
    fn run(mut self, items: mpsc::Receiver<Item>) {
        // The HTTP client is async; this thread is its only user.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "traces are off: cannot start their export thread's runtime");
                // Dropping `items` disconnects the queue: spans are discarded.
                return;
            }
        };
        let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
        let mut due: Option<Instant> = None;
        loop {
            self.report_queue_full();
            // Wake at least once a second so a full queue is reported soon.
            let wait = due
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(BATCH_DELAY)
                .min(BATCH_DELAY);
            match items.recv_timeout(wait) {
                Ok(Item::Span(span)) => {
                    batch.push(*span);
                    due.get_or_insert_with(|| Instant::now() + BATCH_DELAY);
                    if batch.len() >= BATCH {
                        self.export(&runtime, &mut batch);
                        due = None;
                    }
                }
                Ok(Item::Flush(done)) => {
                    self.export(&runtime, &mut batch);
                    due = None;
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    if due.is_some_and(|d| Instant::now() >= d) {
                        self.export(&runtime, &mut batch);
                        due = None;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.export(&runtime, &mut batch);
                    let _ = self.exporter.shutdown_with_timeout(self.timeout);
                    return;
                }
            }
        }
    }

    /// Whether a full queue dropped spans in the last few seconds: then a
    /// batch that got out does not end the failing stretch.
    fn queue_dropped_lately(&self) -> bool {
        let last = self.last_queue_drop.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        last != 0 && now.saturating_sub(last) < QUIET_BEFORE_RECOVERY.as_millis() as u64
    }

    fn report_queue_full(&self) {
        if self.queue_full.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                collector = %self.outlet.target(),
                "trace export queue is full: spans are dropped until the collector catches up"
            );
        }
    }

    fn export(&mut self, runtime: &tokio::runtime::Runtime, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let spans = std::mem::replace(batch, Vec::with_capacity(BATCH));
        let sent = runtime.block_on(async {
            tokio::time::timeout(self.timeout, self.exporter.export(spans)).await
        });
        let cause = lock(&self.last_error).take();
        let failure = match sent {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(cause.unwrap_or_else(|| e.to_string())),
            Err(_) => Some(format!(
                "no answer within {:.1} s",
                self.timeout.as_secs_f64()
            )),
        };
        match failure {
            None if self.queue_dropped_lately() => self.outlet.delivered_during(count),
            None => {
                if let Some((lost, _)) = self.outlet.delivered(count) {
                    tracing::info!(
                        collector = %self.outlet.target(),
                        dropped = lost,
                        "trace export works again; {lost} spans were dropped meanwhile"
                    );
                }
            }
            Some(why) => {
                if self.outlet.dropped(count, &why) {
                    tracing::warn!(
                        collector = %self.outlet.target(),
                        error = %why,
                        "cannot export traces: spans are dropped until the collector answers (cells are not held up)"
                    );
                }
            }
        }
    }
}
