//! [`Skills`]: the registry, the executor and their metrics, as one kernel
//! holds them.
//!
//! The registry's blocking calls (file I/O) run here on tokio's blocking
//! pool, so cells and `skill_request` can simply await them. Nothing here
//! knows Jupyter messages: `magics/skill.rs`, `skill_run.rs` and
//! `skill_request.rs` turn these values into output.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use skillkernel_providers::ChatMessage;

use super::config::SkillsConfig;
use super::exec::Executor;
use super::metrics::SkillMetrics;
use super::registry::{ExecutionGuard, ReloadReport, SkillRegistry};
use super::{ErrorCode, Skill, SkillError};
use skillkernel_stdx::lock;

/// How the kernel sets up its skills (from the daemon's `[skills]`).
#[derive(Debug, Clone)]
pub struct SkillsSetup {
    pub config: SkillsConfig,
    /// Where `.skillkernel/skills` is looked for and conversation skills'
    /// context globs are rooted: the directory the kernel was started in.
    pub working_dir: PathBuf,
    /// The persisted discovery index (`<state_dir>/skills-index`).
    pub index_path: Option<PathBuf>,
    /// The user's trust decisions (`<state_dir>/skill-trust.json`).
    pub trust_store: Option<PathBuf>,
}

/// The kernel's skills.
pub struct Skills {
    pub registry: Arc<SkillRegistry>,
    pub executor: Arc<Executor>,
    pub working_dir: PathBuf,
    /// How installed skills' signatures are checked (`[skills.signatures]`).
    pub signatures: crate::config::SignatureConfig,
    /// Conversation skills' turns so far in the notebook's session; other
    /// clients (MCP sessions) keep their own [`Conversations`].
    conversations: Conversations,
}

/// Conversation skills' turns so far, by skill name, for one client: the
/// notebook's session, or one MCP session. A clone shares the turns: the
/// notebook's outlive a reload of the skills (which makes a new
/// [`Skills`]), and the kernel restores them from its session store.
#[derive(Debug, Default, Clone)]
pub struct Conversations(Arc<Mutex<HashMap<String, Vec<ChatMessage>>>>);

impl Conversations {
    /// Conversations that already have turns (restored at start).
    pub fn restored(turns: impl IntoIterator<Item = (String, Vec<ChatMessage>)>) -> Conversations {
        Conversations(Arc::new(Mutex::new(turns.into_iter().collect())))
    }

    /// The turns of conversation skill `name` so far.
    pub fn turns(&self, name: &str) -> Vec<ChatMessage> {
        lock(&self.0).get(name).cloned().unwrap_or_default()
    }

    /// Appends `turns`; returns the index the first of them got.
    pub fn extend(&self, name: &str, turns: &[ChatMessage]) -> usize {
        let mut all = lock(&self.0);
        let kept = all.entry(name.to_owned()).or_default();
        let first = kept.len();
        kept.extend_from_slice(turns);
        first
    }

    /// Forgets conversation skill `name`'s turns.
    pub fn clear(&self, name: &str) -> bool {
        lock(&self.0).remove(name).is_some()
    }
}

impl Skills {
    /// Opens the registry (discovery: **blocking**, once at start) and
    /// disables the configured skills. Returns the discovery report.
    pub fn open(setup: &SkillsSetup) -> (Skills, ReloadReport) {
        Skills::open_with(setup, None)
    }

    /// As [`Skills::open`], keeping `executor` (its circuit breakers and
    /// metrics) when the registry is reopened with new settings.
    pub fn open_with(
        setup: &SkillsSetup,
        executor: Option<Arc<Executor>>,
    ) -> (Skills, ReloadReport) {
        let config = setup.config.registry_config(
            &setup.working_dir,
            setup.index_path.clone(),
            setup.trust_store.clone(),
        );
        let (registry, report) = SkillRegistry::open(config);
        for name in &setup.config.disabled {
            if let Err(e) = registry.disable(name, "disabled in the [skills] config") {
                tracing::warn!(skill = %name, error = %e, "cannot disable a configured skill");
            }
        }
        let skills = Skills {
            registry,
            executor: executor
                .unwrap_or_else(|| Arc::new(Executor::new(Arc::new(SkillMetrics::new())))),
            working_dir: setup.working_dir.clone(),
            signatures: setup.config.signatures.clone(),
            conversations: Conversations::default(),
        };
        (skills, report)
    }

    /// These skills with `conversations` in place of empty ones: the
    /// notebook's turns carried over a reload, or restored at start.
    pub fn carrying(mut self, conversations: Conversations) -> Skills {
        self.conversations = conversations;
        self
    }

    /// The notebook's conversation-skill turns.
    pub fn conversations(&self) -> &Conversations {
        &self.conversations
    }

    pub fn metrics(&self) -> &Arc<SkillMetrics> {
        self.executor.metrics()
    }

    /// Resolves `spec`, loading and initialising the skill on first use,
    /// and marks it Executing until the guard drops. Records the load time
    /// in the metrics when this call loaded it.
    pub async fn begin_execution(&self, spec: &str) -> Result<ExecutionGuard, SkillError> {
        let registry = Arc::clone(&self.registry);
        let owned = spec.to_owned();
        let guard = blocking(move || registry.begin_execution(&owned)).await?;
        if let Some(took) = guard.loaded_in() {
            self.metrics().record_load(&guard.skill().meta.name, took);
        }
        Ok(guard)
    }

    /// Re-reads one skill (`Some(name)`) or every directory.
    pub async fn reload(&self, name: Option<String>) -> Result<ReloadReport, SkillError> {
        let registry = Arc::clone(&self.registry);
        blocking(move || match name {
            Some(n) => registry.reload(&n),
            None => Ok(registry.reload_all()),
        })
        .await
    }

    /// Runs a blocking registry call (enable, disable, unload, load) off
    /// the async threads.
    pub async fn with_registry<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Arc<SkillRegistry>) -> Result<T, SkillError> + Send + 'static,
    ) -> Result<T, SkillError> {
        let registry = Arc::clone(&self.registry);
        blocking(move || f(&registry)).await
    }

    /// The turns of conversation skill `name` so far (the notebook's).
    pub fn conversation(&self, name: &str) -> Vec<ChatMessage> {
        self.conversations.turns(name)
    }

    /// Appends the notebook's new turns of `name`; returns the index the
    /// first of them got (where the session store writes them).
    pub fn extend_conversation(&self, name: &str, turns: &[ChatMessage]) -> usize {
        self.conversations.extend(name, turns)
    }

    /// Forgets conversation skill `name`'s turns (`%skill reset`).
    pub fn clear_conversation(&self, name: &str) -> bool {
        self.conversations.clear(name)
    }

    /// The skills `skill`'s tools name (and theirs, up to the executor's
    /// nesting limit), held Executing for the run: the guards, and the
    /// skills for [`RunRequest::tool_skills`](crate::exec::RunRequest).
    pub async fn tool_skills(
        &self,
        skill: &Arc<Skill>,
    ) -> Result<(Vec<ExecutionGuard>, Vec<Arc<Skill>>), SkillError> {
        let mut guards: Vec<ExecutionGuard> = Vec::new();
        let mut wanted: Vec<String> = skill.tools.skills().map(str::to_owned).collect();
        let mut depth = 0;
        while !wanted.is_empty() && depth < 3 {
            let mut next = Vec::new();
            for name in wanted {
                if name == skill.meta.name || guards.iter().any(|g| g.skill().meta.name == name) {
                    continue;
                }
                let guard = self.begin_execution(&name).await?;
                next.extend(guard.skill().tools.skills().map(str::to_owned));
                guards.push(guard);
            }
            wanted = next;
            depth += 1;
        }
        let mut resolved: Vec<Arc<Skill>> = guards.iter().map(|g| Arc::clone(g.skill())).collect();
        if skill.tools.skills().any(|n| n == skill.meta.name) {
            resolved.push(Arc::clone(skill));
        }
        Ok((guards, resolved))
    }
}

/// Runs `f` on the blocking pool; a panic there is an execution error, not
/// a dead kernel.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SkillError> + Send + 'static,
) -> Result<T, SkillError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(SkillError::new(
            ErrorCode::SkillExecutionError,
            format!("the skill registry failed: {e}"),
            "this is a bug; the kernel keeps serving — please report it with the log",
        ))
    })
}
