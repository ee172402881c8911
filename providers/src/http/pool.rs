//! The hosts of one backend: which one takes the next request.
//!
//! * **Least outstanding requests.** Each host counts the requests in
//!   flight on it ([`Lease`] holds one); the next goes to the host with
//!   the fewest, ties taken in turn (round robin), so a trickle of
//!   requests spreads too.
//! * **Hosts that list the model first.** What a host's `/models` said is
//!   remembered; a host known not to serve the model is used only when no
//!   other host is up.
//! * **A breaker per host.** A host that fails (refused connection,
//!   timeout, 5xx) is out for a cool-down that doubles with each failure
//!   in a row (1 s up to 60 s). After it, the host is *probing*: the
//!   provider re-checks it (`/models`) before sending it work, and one
//!   success brings it back.
//! * `max_concurrency` caps the requests in flight per host; a request
//!   that finds every host full waits for a lease.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skillkernel_stdx::lock;
use tokio::sync::Notify;

/// First cool-down after a failure.
const FIRST_COOL_DOWN: Duration = Duration::from_secs(1);
/// Longest cool-down.
const MAX_COOL_DOWN: Duration = Duration::from_secs(60);

/// One server of a backend.
#[derive(Debug)]
pub struct Host {
    /// Base URL without a trailing slash.
    pub url: String,
    outstanding: AtomicUsize,
    state: Mutex<HostState>,
}

#[derive(Debug, Default)]
struct HostState {
    /// Failures in a row.
    failures: u32,
    /// Out until then.
    down_until: Option<Instant>,
    /// The last failure, for status and error messages.
    last_error: Option<String>,
    /// What `/models` said last, when it has been asked.
    models: Option<Vec<String>>,
}

/// Whether a host may take work now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Its cool-down is over: re-check before use.
    Probing,
    Down,
}

impl Host {
    fn new(url: &str) -> Self {
        Host {
            url: url.to_owned(),
            outstanding: AtomicUsize::new(0),
            state: Mutex::new(HostState::default()),
        }
    }

    pub fn health(&self) -> Health {
        let state = lock(&self.state);
        match state.down_until {
            None => Health::Up,
            Some(until) if Instant::now() >= until => Health::Probing,
            Some(_) => Health::Down,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.state).last_error.clone()
    }

    /// What the host's `/models` said last.
    pub fn models(&self) -> Option<Vec<String>> {
        lock(&self.state).models.clone()
    }

    pub fn set_models(&self, models: Vec<String>) {
        lock(&self.state).models = Some(models);
    }

    /// `Some(true)` when the host is known to serve `model`, `Some(false)`
    /// when known not to, `None` when it has not said.
    fn serves(&self, model: &str) -> Option<bool> {
        lock(&self.state)
            .models
            .as_ref()
            .map(|m| m.iter().any(|name| name == model))
    }

    /// The host answered: its breaker closes.
    pub fn succeeded(&self) {
        let mut state = lock(&self.state);
        state.failures = 0;
        state.down_until = None;
        state.last_error = None;
    }

    /// The host failed: out for a cool-down that grows with each failure
    /// in a row.
    pub fn failed(&self, error: &str) {
        let mut state = lock(&self.state);
        state.failures = state.failures.saturating_add(1);
        let exponent = state.failures.saturating_sub(1).min(6);
        let cool_down = (FIRST_COOL_DOWN * 2u32.pow(exponent)).min(MAX_COOL_DOWN);
        state.down_until = Some(Instant::now() + cool_down);
        state.last_error = Some(error.to_owned());
        tracing::warn!(host = %self.url, failures = state.failures, cool_down_s = cool_down.as_secs(), error, "host taken out");
    }
}

/// A request in flight on one host; dropping it frees the slot.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<PoolInner>,
    index: usize,
}

impl Lease {
    pub fn host(&self) -> &Host {
        &self.pool.hosts[self.index]
    }

    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.host().outstanding.fetch_sub(1, Ordering::Relaxed);
        self.pool.freed.notify_waiters();
    }
}

#[derive(Debug)]
struct PoolInner {
    hosts: Vec<Host>,
    max_concurrency: usize,
    freed: Notify,
    /// Where the round robin among equally busy hosts starts next.
    turn: AtomicUsize,
}

/// The hosts of one backend.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

/// Why no host could be picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoHost {
    /// Every host not yet tried is out (cooling down).
    AllDown,
    /// Every host has been tried for this request.
    AllTried,
}

impl Pool {
    pub fn new(urls: &[String], max_concurrency: usize) -> Self {
        Pool {
            inner: Arc::new(PoolInner {
                hosts: urls.iter().map(|u| Host::new(u)).collect(),
                max_concurrency,
                freed: Notify::new(),
                turn: AtomicUsize::new(0),
            }),
        }
    }

    pub fn hosts(&self) -> &[Host] {
        &self.inner.hosts
    }

    /// The host for the next request for `model`, skipping those in
    /// `tried`; waits while every candidate is at `max_concurrency`.
    pub async fn lease(&self, model: &str, tried: &[usize]) -> Result<Lease, NoHost> {
        loop {
            let freed = self.inner.freed.notified();
            match self.pick(model, tried) {
                Pick::Lease(lease) => return Ok(lease),
                Pick::Full => freed.await,
                Pick::None(why) => return Err(why),
            }
        }
    }

    fn pick(&self, model: &str, tried: &[usize]) -> Pick {
        let hosts = &self.inner.hosts;
        let untried: Vec<usize> = (0..hosts.len()).filter(|i| !tried.contains(i)).collect();
        if untried.is_empty() {
            return Pick::None(NoHost::AllTried);
        }
        let usable: Vec<usize> = untried
            .iter()
            .copied()
            .filter(|i| hosts[*i].health() != Health::Down)
            .collect();
        if usable.is_empty() {
            return Pick::None(NoHost::AllDown);
        }
        // Hosts known to serve the model (or that have not said), else any.
        let preferred: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|i| hosts[*i].serves(model) != Some(false))
            .collect();
        let candidates = if preferred.is_empty() {
            usable
        } else {
            preferred
        };
        let limit = self.inner.max_concurrency;
        let open: Vec<usize> = candidates
            .into_iter()
            .filter(|i| limit == 0 || hosts[*i].outstanding() < limit)
            .collect();
        let Some(fewest) = open.iter().map(|i| hosts[*i].outstanding()).min() else {
            return Pick::Full;
        };
        // Among the least busy, the first at or after this turn's start.
        let turn = self.inner.turn.load(Ordering::Relaxed) % hosts.len();
        let least: Vec<usize> = open
            .into_iter()
            .filter(|i| hosts[*i].outstanding() == fewest)
            .collect();
        let index = least
            .iter()
            .copied()
            .find(|i| *i >= turn)
            .unwrap_or(least[0]);
        self.inner.turn.store(index + 1, Ordering::Relaxed);
        hosts[index].outstanding.fetch_add(1, Ordering::Relaxed);
        Pick::Lease(Lease {
            pool: Arc::clone(&self.inner),
            index,
        })
    }
}

enum Pick {
    Lease(Lease),
    Full,
    None(NoHost),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, max: usize) -> Pool {
        let urls: Vec<String> = (0..n).map(|i| format!("http://h{i}")).collect();
        Pool::new(&urls, max)
    }

    #[tokio::test]
    async fn requests_go_to_the_host_with_the_fewest_in_flight() {
        let pool = pool(3, 0);
        let a = pool.lease("m", &[]).await.unwrap();
        let b = pool.lease("m", &[]).await.unwrap();
        let c = pool.lease("m", &[]).await.unwrap();
        assert_eq!([a.index(), b.index(), c.index()], [0, 1, 2]);
        drop(b);
        assert_eq!(pool.lease("m", &[]).await.unwrap().index(), 1);
    }

    #[tokio::test]
    async fn a_host_that_lists_the_model_is_preferred_and_a_failed_one_skipped() {
        let pool = pool(3, 0);
        pool.hosts()[0].set_models(vec!["other".into()]);
        pool.hosts()[1].set_models(vec!["m".into()]);
        assert_eq!(pool.lease("m", &[]).await.unwrap().index(), 1);
        pool.hosts()[1].failed("refused");
        assert_eq!(pool.hosts()[1].health(), Health::Down);
        // Host 2 has not said what it serves: it may have it.
        assert_eq!(pool.lease("m", &[]).await.unwrap().index(), 2);
        assert_eq!(pool.lease("m", &[2]).await.unwrap().index(), 0);
        assert_eq!(pool.lease("m", &[0, 2]).await.unwrap_err(), NoHost::AllDown);
        assert_eq!(
            pool.lease("m", &[0, 1, 2]).await.unwrap_err(),
            NoHost::AllTried
        );
        pool.hosts()[1].succeeded();
        assert_eq!(pool.hosts()[1].health(), Health::Up);
    }

    #[tokio::test]
    async fn a_full_pool_waits_for_a_free_slot() {
        let pool = pool(1, 1);
        let first = pool.lease("m", &[]).await.unwrap();
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.lease("m", &[]).await.map(|l| l.index()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(0));
    }
}
