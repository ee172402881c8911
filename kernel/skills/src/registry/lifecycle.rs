//! The lifecycle of one skill version: a state machine with hooks, whose
//! every transition is a `tracing` event and a line of `%skill info`.
//!
//! | from                                   | hook       | to                    |
//! |----------------------------------------|------------|-----------------------|
//! | Unloaded, Failed                       | load       | Loaded, Failed        |
//! | Loaded, Deactivated, Failed            | init       | Initializing          |
//! | Initializing                           | init       | Ready, Failed         |
//! | Ready                                  | activate   | Active                |
//! | Active                                 | execute    | Executing             |
//! | Executing (last run ends)              | execute    | Active                |
//! | Loaded, Ready, Active                  | deactivate | Deactivated           |
//! | Executing (last run of a disabled one) | deactivate | Deactivated           |
//! | Loaded, Ready, Deactivated, Failed     | unload     | Unloaded              |
//! | any                                    | reload     | Unloaded              |
//!
//! * load = full parse; init = dependency resolution; activate = a session
//!   starts using it; execute = a run in progress (several at once are
//!   counted, the state stays Executing until the last ends); deactivate =
//!   disabled, or on the way to unload; unload = the parsed skill is
//!   dropped, the header kept.
//! * `Reload` is the registry's own hook: the skill's files changed, so the
//!   version goes back to Unloaded from any state. Runs in flight finish on
//!   the `Arc<Skill>` they hold and no longer count (see `generation`).
//! * Failed keeps its error. A skill that failed to *load* stays Failed
//!   until its files are reloaded; one that parsed but failed to
//!   *initialise* (a dependency) retries init on its next activation.
//!
//! This module never touches files or other skills; an invalid transition
//! is a [`LifecycleError`], never a panic.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;

use crate::{ErrorCode, LoadError, Skill, SkillError};

/// Where a skill version is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum State {
    /// Only the header is known.
    Unloaded,
    /// Parsed and validated.
    Loaded,
    /// Its dependencies are being resolved.
    Initializing,
    /// Dependencies resolved; not yet used by a session.
    Ready,
    /// Used by a session.
    Active,
    /// At least one run in progress.
    Executing,
    /// Disabled, or on its way to unload; its parsed skill is kept.
    Deactivated,
    /// Did not load or initialise; see the kept error.
    Failed,
}

/// What caused a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    Load,
    Init,
    Activate,
    Execute,
    Deactivate,
    Unload,
    /// The skill's files changed.
    Reload,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Load => "load",
            Hook::Init => "init",
            Hook::Activate => "activate",
            Hook::Execute => "execute",
            Hook::Deactivate => "deactivate",
            Hook::Unload => "unload",
            Hook::Reload => "reload",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `hook` may take a skill from `from` to `to`.
pub fn allowed(from: State, hook: Hook, to: State) -> bool {
    use Hook::*;
    use State::*;
    matches!(
        (from, hook, to),
        (Unloaded | Failed, Load, Loaded | Failed)
            | (Loaded | Deactivated | Failed, Init, Initializing)
            | (Initializing, Init, Ready | Failed)
            | (Ready, Activate, Active)
            | (Active, Execute, Executing)
            | (Executing, Execute, Active)
            | (Loaded | Ready | Active | Executing, Deactivate, Deactivated)
            | (Loaded | Ready | Deactivated | Failed, Unload, Unloaded)
            | (_, Reload, Unloaded)
    )
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    pub from: State,
    pub to: State,
    pub hook: Hook,
    /// How long the hook's work took (a parse, a resolution, a run).
    pub duration: Duration,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("cannot {hook} `{skill}`: it is {from}{detail}")]
pub struct LifecycleError {
    pub skill: String,
    pub from: State,
    pub hook: Hook,
    /// Why, beyond the state (`, with 2 runs in progress`).
    pub detail: String,
}

impl From<LifecycleError> for SkillError {
    fn from(e: LifecycleError) -> Self {
        let hint = match (e.from, e.hook) {
            (State::Executing, _) => "wait for its runs to finish, or interrupt them",
            (State::Failed, _) => "fix the error `%skill info` shows, then `%skill reload`",
            (State::Unloaded, _) => "it is loaded on first use; `%skill load` loads it now",
            _ => "`%skill info` shows its state and history",
        };
        SkillError::new(ErrorCode::ValidationError, e.to_string(), hint).for_skill(e.skill)
    }
}

/// The state, history and parsed skill of one skill version.
#[derive(Debug)]
pub struct Lifecycle {
    skill_id: String,
    state: State,
    history: VecDeque<Transition>,
    history_len: usize,
    /// Why it is Failed.
    pub error: Option<SkillError>,
    /// The file's own error, when it Failed to load.
    pub load_error: Option<LoadError>,
    /// The parsed skill, from load until unload.
    pub skill: Option<Arc<Skill>>,
    /// Runs in progress of the current generation.
    pub executions: usize,
    /// Bumped by `Reload`: runs of an older generation no longer count.
    pub generation: u64,
}

impl Lifecycle {
    pub fn new(skill_id: impl Into<String>, history_len: usize) -> Lifecycle {
        Lifecycle {
            skill_id: skill_id.into(),
            state: State::Unloaded,
            history: VecDeque::new(),
            history_len: history_len.max(1),
            error: None,
            load_error: None,
            skill: None,
            executions: 0,
            generation: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn skill_id(&self) -> &str {
        &self.skill_id
    }

    /// Oldest first.
    pub fn history(&self) -> Vec<Transition> {
        self.history.iter().cloned().collect()
    }

    /// Moves to `to` through `hook` if allowed: records, logs, and keeps
    /// the error of a move to Failed (clearing it on any other move).
    pub fn apply(
        &mut self,
        hook: Hook,
        to: State,
        duration: Duration,
    ) -> Result<(), LifecycleError> {
        let from = self.state;
        if !allowed(from, hook, to) {
            return Err(self.refuse(hook, ""));
        }
        self.state = to;
        if to != State::Failed {
            self.error = None;
            self.load_error = None;
        }
        match (hook, to) {
            (Hook::Reload, _) => {
                self.generation += 1;
                self.executions = 0;
                self.skill = None;
            }
            (Hook::Unload, _) => self.skill = None,
            _ => {}
        }
        tracing::info!(
            target: "skillkernel::skills::lifecycle",
            skill = %self.skill_id, from = %from, to = %to, hook = %hook, duration = ?duration,
            "skill lifecycle"
        );
        if self.history.len() == self.history_len {
            self.history.pop_front();
        }
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.history.push_back(Transition {
            at_unix_ms,
            from,
            to,
            hook,
            duration,
        });
        Ok(())
    }

    /// Moves to Failed through `hook`, keeping `error`.
    pub fn fail(
        &mut self,
        hook: Hook,
        error: SkillError,
        duration: Duration,
    ) -> Result<(), LifecycleError> {
        self.apply(hook, State::Failed, duration)?;
        self.error = Some(error.for_skill(self.skill_id.clone()));
        Ok(())
    }

    /// Moves to Failed because the skill's file does not load.
    pub fn fail_load(
        &mut self,
        error: LoadError,
        duration: Duration,
    ) -> Result<(), LifecycleError> {
        self.fail(Hook::Load, error.clone().into(), duration)?;
        self.load_error = Some(error);
        Ok(())
    }

    /// The error for a refused `hook`, with `detail` after the state.
    pub fn refuse(&self, hook: Hook, detail: &str) -> LifecycleError {
        let detail = if self.state == State::Executing && detail.is_empty() {
            format!(", with {} run(s) in progress", self.executions)
        } else {
            detail.to_string()
        };
        LifecycleError {
            skill: self.skill_id.clone(),
            from: self.state,
            hook,
            detail,
        }
    }
}

#[cfg(test)]
mod tests;
