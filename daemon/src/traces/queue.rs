//! The span processor: ended spans go into a bounded buffer, and one
//! thread sends them to the collector in batches.
//!
//! Architecture invariant: nothing here blocks the thread that ends a
//! span, nor makes it wake another: ending a span is an uncontended lock
//! and a push (the export thread is woken only when a full batch is
//! waiting; otherwise it looks once a second). Waking it per span cost a
//! futex call and a context switch per span — a tenth of a trivial cell's
//! round trip on two cores. A full buffer drops the span (counted in the
//! [`Outlet`]); a collector that is down or slow holds up only the export
//! thread, whose every export has a deadline. The SDK's own batch
//! processor also drops, but cannot tell anyone how much: this one
//! counts, for `%status` and the metrics page, and says so once in the log
//! per failing stretch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use skillkernel_stdx::lock;
use skillkernel_stdx::outlet::Outlet;

use super::client::LastError;

/// Spans per export request; a full batch wakes the export thread.
const BATCH: usize = 512;
/// A span waits at most about this long for its batch.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// A stretch of buffer drops ends only after this long without one.
const QUIET_BEFORE_RECOVERY: Duration = Duration::from_secs(5);

/// What the span-ending threads and the export thread share.
#[derive(Debug)]
struct Buffer {
    state: Mutex<State>,
    wake: Condvar,
    capacity: usize,
    outlet: Arc<Outlet>,
    /// When the buffer last dropped a span (ms since `epoch`, +1; 0:
    /// never), and whether the drop that began a stretch is still to be
    /// logged (logging is left to the export thread: never from inside
    /// the subscriber).
    last_drop: AtomicU64,
    unreported_drop: AtomicBool,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Ended spans in batches of at most [`BATCH`], each allocated once
    /// at its full size: a push never copies what is already there.
    chunks: Vec<Vec<SpanData>>,
    /// Spans waiting or being exported: the bound covers both.
    held: usize,
    flushes: Vec<mpsc::Sender<()>>,
    /// No more spans are taken: shut down.
    closed: bool,
    /// The export thread has ended (shut down, or failed to start, or
    /// panicked): spans are dropped, flushes answered at once.
    worker_gone: bool,
}

impl State {
    fn full_batch_waiting(&self) -> bool {
        self.chunks.len() > 1 || self.chunks.first().is_some_and(|c| c.len() >= BATCH)
    }
}

impl Buffer {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Counts a dropped span; the first of a stretch is logged later.
    fn drop_span(&self, count: u64, why: &str) {
        self.last_drop.store(self.now_ms(), Ordering::Relaxed);
        if self.outlet.dropped(count, why) {
            self.unreported_drop.store(true, Ordering::Relaxed);
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

/// Bounded buffer + export thread. See the module docs.
#[derive(Debug)]
pub(super) struct QueueProcessor {
    buffer: Arc<Buffer>,
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
        let buffer = Arc::new(Buffer {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            capacity: capacity.max(1),
            outlet,
            last_drop: AtomicU64::new(0),
            unreported_drop: AtomicBool::new(false),
            epoch: Instant::now(),
        });
        let worker = Worker {
            exporter,
            buffer: buffer.clone(),
            timeout,
            last_error,
        };
        let handle = std::thread::Builder::new()
            .name("skillkernel-traces".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            buffer,
            worker: Mutex::new(Some(handle)),
            timeout,
        })
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let buffer = &self.buffer;
        let mut state = buffer.state();
        if state.closed {
            return;
        }
        if state.worker_gone {
            drop(state);
            buffer.drop_span(1, "the trace export thread is not running");
            return;
        }
        if state.held >= buffer.capacity {
            drop(state);
            buffer.drop_span(
                1,
                "the export queue is full: the collector is slower than the spans come",
            );
            return;
        }
        match state.chunks.last_mut() {
            Some(chunk) if chunk.len() < BATCH => chunk.push(span),
            _ => {
                let mut chunk = Vec::with_capacity(BATCH);
                chunk.push(span);
                state.chunks.push(chunk);
            }
        }
        state.held += 1;
        if state.chunks.last().is_some_and(|c| c.len() == BATCH) {
            buffer.wake.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (done, flushed) = mpsc::channel();
        {
            let mut state = self.buffer.state();
            if state.closed || state.worker_gone {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            state.flushes.push(done);
        }
        self.buffer.wake.notify_one();
        flushed
            .recv_timeout(self.timeout * 2)
            .map_err(|_| OTelSdkError::Timeout(self.timeout * 2))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        // Closing lets the thread export what is left and end.
        {
            let mut state = self.buffer.state();
            if state.closed {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            state.closed = true;
        }
        self.buffer.wake.notify_one();
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

/// Marks the export thread gone when it ends, for whatever reason.
struct WorkerGone(Arc<Buffer>);

impl Drop for WorkerGone {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.worker_gone = true;
        // Dropping the senders answers every waiting flush at once.
        state.flushes.clear();
        let left = state.held;
        state.chunks.clear();
        state.held = 0;
        let closed = state.closed;
        drop(state);
        if left > 0 && !closed {
            self.0
                .drop_span(left as u64, "the trace export thread stopped");
        }
    }
}

struct Worker<E> {
    exporter: E,
    buffer: Arc<Buffer>,
    timeout: Duration,
    last_error: LastError,
}

impl<E: SpanExporter> Worker<E> {
    fn run(mut self) {
        // However this thread ends, spans stop being taken and waiters
        // are let go.
        let _gone = WorkerGone(self.buffer.clone());
        // The HTTP client is async; this thread is its only user.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "traces are off: cannot start their export thread's runtime");
                return;
            }
        };
        loop {
            let (chunks, flushes, closed) = self.take();
            self.report_drops();
            for chunk in chunks {
                let count = chunk.len();
                self.export(&runtime, chunk);
                self.buffer.state().held -= count;
            }
            for flushed in flushes {
                let _ = flushed.send(());
            }
            if closed {
                let _ = self.exporter.shutdown_with_timeout(self.timeout);
                return;
            }
        }
    }

    /// Waits for a full batch, a flush, the close or the batch delay, and
    /// takes what is waiting (still counted as held until exported).
    fn take(&self) -> (Vec<Vec<SpanData>>, Vec<mpsc::Sender<()>>, bool) {
        let deadline = Instant::now() + BATCH_DELAY;
        let mut state = self.buffer.state();
        while !state.full_batch_waiting() && state.flushes.is_empty() && !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.buffer.wake.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        (
            std::mem::take(&mut state.chunks),
            std::mem::take(&mut state.flushes),
            state.closed,
        )
    }

    /// Whether the buffer dropped spans in the last few seconds: then a
    /// batch that got out does not end the failing stretch.
    fn dropped_lately(&self) -> bool {
        let last = self.buffer.last_drop.load(Ordering::Relaxed);
        last != 0
            && self.buffer.now_ms().saturating_sub(last) < QUIET_BEFORE_RECOVERY.as_millis() as u64
    }

    fn report_drops(&self) {
        if self.buffer.unreported_drop.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                collector = %self.buffer.outlet.target(),
                "trace export queue is full: spans are dropped until the collector catches up"
            );
        }
    }

    fn export(&mut self, runtime: &tokio::runtime::Runtime, batch: Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let outlet = &self.buffer.outlet;
        let sent = runtime.block_on(async {
            tokio::time::timeout(self.timeout, self.exporter.export(batch)).await
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
            None if self.dropped_lately() => outlet.delivered_during(count),
            None => {
                if let Some((lost, _)) = outlet.delivered(count) {
                    tracing::info!(
                        collector = %outlet.target(),
                        dropped = lost,
                        "trace export works again; {lost} spans were dropped meanwhile"
                    );
                }
            }
            Some(why) => {
                if outlet.dropped(count, &why) {
                    tracing::warn!(
                        collector = %outlet.target(),
                        error = %why,
                        "cannot export traces: spans are dropped until the collector answers (cells are not held up)"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
    use opentelemetry::InstrumentationScope;
    use std::sync::atomic::AtomicUsize;

    /// Counts what it is given; each export waits until `gate` opens.
    #[derive(Debug, Clone)]
    struct Gated {
        exported: Arc<AtomicUsize>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl SpanExporter for Gated {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let (open, opened) = &*self.gate;
            let mut open = lock(open);
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.exported.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    fn span() -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "cell".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    #[test]
    fn spans_held_while_an_export_hangs_stay_within_the_bound_and_the_rest_are_counted() {
        let exporter = Gated {
            exported: Arc::default(),
            gate: Arc::new((Mutex::new(false), Condvar::new())),
        };
        let outlet = Arc::new(Outlet::new("traces", "test"));
        let capacity = 600;
        let processor = QueueProcessor::start(
            exporter.clone(),
            capacity,
            Duration::from_secs(30),
            outlet.clone(),
            LastError::default(),
        )
        .unwrap();
        // A full batch wakes the thread, whose export then hangs.
        for _ in 0..BATCH {
            processor.on_end(span());
        }
        std::thread::sleep(Duration::from_millis(200));
        // The hanging batch is held too: only 88 more fit.
        for _ in 0..1000 {
            processor.on_end(span());
        }
        assert!(processor.buffer.state().held <= capacity);
        assert_eq!(outlet.status().dropped, (BATCH + 1000 - capacity) as u64);
        // Let it through: everything held is exported at shutdown.
        *lock(&exporter.gate.0) = true;
        exporter.gate.1.notify_all();
        processor
            .shutdown_with_timeout(Duration::from_secs(10))
            .unwrap();
        assert_eq!(exporter.exported.load(Ordering::SeqCst), capacity);
        assert_eq!(outlet.status().delivered, capacity as u64);
    }
}
