//! A circuit breaker per skill: a skill that keeps failing is refused for a
//! while instead of tying up a model on every call.
//!
//! Closed → open after `circuit_threshold` consecutive failed executions →
//! once `circuit_recovery` has passed, half-open: one trial execution goes
//! through (others are refused while it runs) → closed when it succeeds,
//! open again when it fails. A manual reset closes it.
//!
//! Only executions that reached a model count: bad parameters and
//! interrupted runs are neither successes nor failures. A threshold of 0
//! turns the breaker off. Breakers are keyed by skill name, so every
//! version of a skill shares one. Time is tokio's, so paused test time
//! drives recovery.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use tokio::time::Instant;

use crate::model::Resilience;
use crate::{ErrorCode, SkillError};

/// The breaker's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Runs go through.
    Closed,
    /// Runs are refused until the recovery time has passed.
    Open,
    /// The recovery time has passed: the next run is a trial.
    HalfOpen,
}

/// A breaker as `%skill info` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerState {
    pub state: CircuitState,
    pub consecutive_failures: u32,
    /// Failures that open it (0: never).
    pub threshold: u32,
    /// While open: how long until a trial is let through.
    #[serde(rename = "retry_in_ms", serialize_with = "millis")]
    pub retry_in: Option<Duration>,
    /// How many times it has opened since the last reset.
    pub times_opened: u64,
}

fn millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Default)]
struct Breaker {
    failures: u32,
    opened_at: Option<Instant>,
    trial_running: bool,
    threshold: u32,
    recovery: Duration,
    times_opened: u64,
}

impl Breaker {
    fn state(&self, now: Instant) -> BreakerState {
        let (state, retry_in) = match self.opened_at {
            None => (CircuitState::Closed, None),
            Some(at) => match self.recovery.checked_sub(now - at) {
                Some(left) if !left.is_zero() => (CircuitState::Open, Some(left)),
                _ => (CircuitState::HalfOpen, Some(Duration::ZERO)),
            },
        };
        BreakerState {
            state,
            consecutive_failures: self.failures,
            threshold: self.threshold,
            retry_in,
            times_opened: self.times_opened,
        }
    }
}

/// A breaker as it is saved to survive a restart: when it opened is
/// wall-clock time, so the recovery counts the time the kernel was down.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBreaker {
    pub failures: u32,
    /// Milliseconds since the Unix epoch, while open.
    pub opened_at_unix_ms: Option<u64>,
    pub times_opened: u64,
    /// The skill's figures when saved (the next run sets them again).
    pub threshold: u32,
    pub recovery_ms: u64,
}

/// How a run that was let through ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    /// Interrupted, or stopped before a model call: does not count.
    Neutral,
}

/// The breakers of every skill.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    by_skill: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Breaker>> {
        self.by_skill.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets a run of `skill` through, or refuses it while the breaker is
    /// open (or a half-open trial is running).
    pub(crate) fn admit(
        &self,
        skill: &str,
        resilience: &Resilience,
    ) -> Result<Permit<'_>, SkillError> {
        let now = Instant::now();
        let mut map = self.lock();
        let breaker = map.entry(skill.to_owned()).or_default();
        breaker.threshold = resilience.circuit_threshold;
        breaker.recovery = resilience.circuit_recovery;
        let state = breaker.state(now);
        let trial = match state.state {
            CircuitState::Closed => false,
            CircuitState::HalfOpen if !breaker.trial_running => {
                breaker.trial_running = true;
                true
            }
            _ => return Err(refusal(skill, &state, breaker.trial_running)),
        };
        Ok(Permit {
            breakers: self,
            skill: skill.to_owned(),
            trial,
            finished: false,
        })
    }

    pub(crate) fn state(&self, skill: &str) -> BreakerState {
        let now = Instant::now();
        self.lock()
            .get(skill)
            .map_or_else(|| Breaker::default().state(now), |b| b.state(now))
    }

    /// The skills whose breaker is open now (refusing runs), by name.
    pub(crate) fn open(&self) -> Vec<String> {
        let now = Instant::now();
        let mut open: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, b)| b.state(now).state == CircuitState::Open)
            .map(|(name, _)| name.clone())
            .collect();
        open.sort();
        open
    }

    /// `skill`'s breaker to save; `None` when it has nothing to keep.
    pub(crate) fn saved(&self, skill: &str) -> Option<SavedBreaker> {
        let map = self.lock();
        let b = map.get(skill)?;
        let opened_at_unix_ms = b.opened_at.map(|at| {
            let ago = Instant::now().saturating_duration_since(at).as_millis() as u64;
            unix_ms().saturating_sub(ago)
        });
        let kept = b.failures > 0 || b.opened_at.is_some() || b.times_opened > 0;
        kept.then_some(SavedBreaker {
            failures: b.failures,
            opened_at_unix_ms,
            times_opened: b.times_opened,
            threshold: b.threshold,
            recovery_ms: b.recovery.as_millis() as u64,
        })
    }

    /// Puts back a saved breaker (a restart): open still, half-open when
    /// its recovery passed meanwhile (the skill's own figures apply at the
    /// next run).
    pub(crate) fn restore(&self, skill: &str, saved: &SavedBreaker) {
        let now = Instant::now();
        let recovery = Duration::from_millis(saved.recovery_ms);
        let opened_at = saved.opened_at_unix_ms.map(|at| {
            // Longer ago than the recovery is as good as the recovery (and
            // the monotonic clock may not reach back past a reboot).
            let ago = Duration::from_millis(unix_ms().saturating_sub(at)).min(recovery);
            now.checked_sub(ago).unwrap_or(now)
        });
        self.lock().insert(
            skill.to_owned(),
            Breaker {
                failures: saved.failures,
                opened_at,
                times_opened: saved.times_opened,
                threshold: saved.threshold,
                recovery,
                trial_running: false,
            },
        );
    }

    /// Closes the breaker and forgets its failures.
    pub(crate) fn reset(&self, skill: &str) {
        self.lock().remove(skill);
    }

    fn finish(&self, skill: &str, trial: bool, outcome: Outcome) {
        let mut map = self.lock();
        let Some(b) = map.get_mut(skill) else {
            return; // reset while the run was going
        };
        if trial {
            b.trial_running = false;
        }
        match outcome {
            Outcome::Neutral => {}
            Outcome::Success => {
                b.failures = 0;
                b.opened_at = None;
            }
            Outcome::Failure => {
                b.failures = b.failures.saturating_add(1);
                let reopen = trial
                    || (b.threshold > 0 && b.failures >= b.threshold && b.opened_at.is_none());
                if reopen {
                    b.opened_at = Some(Instant::now());
                    b.times_opened += 1;
                }
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn refusal(skill: &str, state: &BreakerState, trial_running: bool) -> SkillError {
    let when = if trial_running {
        "a trial run is going now; if it succeeds the skill runs again".to_owned()
    } else {
        format!(
            "it lets one trial run through in {:.1} s",
            state.retry_in.unwrap_or_default().as_secs_f64()
        )
    };
    SkillError::new(
        ErrorCode::CircuitBreakerOpen,
        format!(
            "`{skill}` is refused: its circuit breaker opened after {} consecutive failed executions",
            state.consecutive_failures
        ),
        format!(
            "{when}; fix the cause (see the last error, `%model status`), or close it now with `%skill reset {skill}`"
        ),
    )
}

/// A run let through; report how it ended with [`Permit::finish`].
/// Dropped unfinished (the run was abandoned), it counts as neutral.
pub(crate) struct Permit<'a> {
    breakers: &'a Breakers,
    skill: String,
    trial: bool,
    finished: bool,
}

impl Permit<'_> {
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.breakers.finish(&self.skill, self.trial, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.breakers
                .finish(&self.skill, self.trial, Outcome::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resilience(threshold: u32) -> Resilience {
        Resilience {
            circuit_threshold: threshold,
            circuit_recovery: Duration::from_secs(30),
            ..Resilience::default()
        }
    }

    fn fail(b: &Breakers, r: &Resilience) {
        b.admit("s", r).unwrap().finish(Outcome::Failure);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_half_opens_for_one_trial() {
        let (b, r) = (Breakers::default(), resilience(2));
        fail(&b, &r);
        assert_eq!(b.state("s").state, CircuitState::Closed);
        fail(&b, &r);
        let open = b.state("s");
        assert_eq!(
            (open.state, open.consecutive_failures),
            (CircuitState::Open, 2)
        );
        let refused = b.admit("s", &r).err().unwrap();
        assert_eq!(refused.code, ErrorCode::CircuitBreakerOpen);
        assert!(refused.hint.contains("30.0 s") && refused.hint.contains("%skill reset s"));

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.state("s").state, CircuitState::HalfOpen);
        let trial = b.admit("s", &r).unwrap();
        assert!(b.admit("s", &r).is_err(), "one trial at a time");
        trial.finish(Outcome::Failure);
        assert_eq!(b.state("s").state, CircuitState::Open);
        assert_eq!(b.state("s").times_opened, 2);

        tokio::time::advance(Duration::from_secs(31)).await;
        b.admit("s", &r).unwrap().finish(Outcome::Success);
        let closed = b.state("s");
        assert_eq!(
            (closed.state, closed.consecutive_failures),
            (CircuitState::Closed, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_saved_open_breaker_is_open_after_a_restart_and_half_open_once_its_time_passed() {
        let (b, r) = (Breakers::default(), resilience(2));
        assert_eq!(b.saved("s"), None, "nothing to keep");
        fail(&b, &r);
        fail(&b, &r);
        let saved = b.saved("s").unwrap();
        assert_eq!((saved.failures, saved.times_opened), (2, 1));

        let restarted = Breakers::default();
        restarted.restore("s", &saved);
        let open = restarted.state("s");
        assert_eq!((open.state, open.threshold), (CircuitState::Open, 2));
        assert!(open.retry_in.unwrap() > Duration::from_secs(29));
        assert!(restarted.admit("s", &r).is_err());

        let long_ago = SavedBreaker {
            opened_at_unix_ms: Some(unix_ms() - 60_000),
            ..saved
        };
        let later = Breakers::default();
        later.restore("s", &long_ago);
        assert_eq!(later.state("s").state, CircuitState::HalfOpen);
        later.admit("s", &r).unwrap().finish(Outcome::Success);
        assert_eq!(later.state("s").state, CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trial_frees_the_slot_and_reset_closes() {
        let (b, r) = (Breakers::default(), resilience(1));
        fail(&b, &r);
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(b.admit("s", &r).unwrap());
        assert!(b.admit("s", &r).is_ok());
        fail(&b, &r);
        b.reset("s");
        assert_eq!(b.state("s").state, CircuitState::Closed);
        let off = resilience(0);
        for _ in 0..10 {
            fail(&b, &off);
        }
        assert_eq!(b.state("s").state, CircuitState::Closed);
    }
}
