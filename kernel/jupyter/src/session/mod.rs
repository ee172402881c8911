//! State shared by the kernel's tasks: identity, signer, session data, the
//! running cell's cancellation token. Session data is restored from the
//! session store at start; changes go through the write-through methods in
//! [`writes`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use skillkernel_stdx::{lock, read, write};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use skillkernel_protocol::{Header, Message, Signer};
use skillkernel_providers::usage::Caller;
use skillkernel_providers::{ChatMessage, ModelInfo};

mod mcp_sessions;
mod writes;

use crate::errors::KernelError;
use skillkernel_transport::{FrameSender, IopubChannel};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::health::HealthMonitor;
use crate::history::History;
use crate::iopub::Iopub;
use crate::live::{Live, ShutdownSettings};
use crate::operations::Operations;
use crate::store::{Persistence, Restored};
use crate::{ExitReason, KernelConfig, Models};
use skillkernel_protocol::WireLimits;
use skillkernel_sandbox::Sandbox;
use skillkernel_skills::exec::Executor;
use skillkernel_skills::service::{Conversations, Skills, SkillsSetup};

/// What a notebook session accumulates.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Count of executions with `store_history`.
    pub execution_count: u64,
    /// `%set` variables. Values that parse as JSON are kept as JSON.
    pub variables: BTreeMap<String, Value>,
    pub history: History,
    /// The chat so far: alternating user and assistant turns.
    pub conversation: Vec<ChatMessage>,
    /// The model chosen with `%model use`; `None` means the default.
    pub current_model: Option<String>,
    /// Generation figures per model, for `%model stats`.
    pub model_stats: BTreeMap<String, ModelUsage>,
}

impl SessionState {
    /// A session continuing from what the store held.
    pub fn restored(r: Restored) -> SessionState {
        SessionState {
            execution_count: r.execution_count,
            variables: r.variables,
            history: History::restored(r.history_session, r.history, r.history_total),
            conversation: r.conversation,
            current_model: r.current_model,
            model_stats: BTreeMap::new(),
        }
    }
}

/// What a session has generated with one model.
#[derive(Debug, Default, Clone)]
pub struct ModelUsage {
    pub turns: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Time spent decoding after the first token, for the mean speed.
    pub decode_ms: f64,
    pub last_tokens_per_second: f64,
    pub last_first_token_ms: Option<f64>,
}

impl ModelUsage {
    /// Adds one generation.
    pub fn record(&mut self, s: &skillkernel_providers::GenerationStats) {
        self.turns += 1;
        self.prompt_tokens += u64::from(s.prompt_tokens);
        self.completion_tokens += u64::from(s.completion_tokens);
        self.decode_ms += s.total_ms - s.first_token_ms.unwrap_or(s.prompt_ms);
        self.last_tokens_per_second = s.tokens_per_second();
        self.last_first_token_ms = s.first_token_ms;
    }

    /// Mean decode speed over the session.
    pub fn tokens_per_second(&self) -> f64 {
        let decoded = self.completion_tokens.saturating_sub(self.turns);
        if self.decode_ms > 0.0 {
            decoded as f64 * 1000.0 / self.decode_ms
        } else {
            0.0
        }
    }
}

/// Everything the kernel's tasks share.
pub struct Shared {
    /// This kernel process's own session id, in every header it sends.
    pub session_id: String,
    pub username: String,
    pub signer: Signer,
    pub config: KernelConfig,
    pub iopub: Iopub,
    pub stdin: Arc<dyn FrameSender>,
    pub started: Instant,
    /// Wall-clock time of the start, for the status report.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Samples this process and its host; see [`crate::health`].
    pub health: HealthMonitor,
    /// Work in flight; the shutdown coordinator waits on it.
    pub operations: Operations,
    /// Requests and cells counted for the metrics endpoint.
    pub metrics: crate::metrics::KernelMetrics,
    live: RwLock<Live>,
    state: Mutex<SessionState>,
    /// Where session data is persisted, if anywhere.
    pub(crate) persistence: Persistence,
    running: Mutex<Option<CancellationToken>>,
    exit: watch::Sender<Option<ExitReason>>,
    /// `input_request` msg_id → the cell waiting for its `input_reply`.
    pub(crate) stdin_waiters: Mutex<HashMap<String, oneshot::Sender<String>>>,
    /// The `shutdown_request` being served and the channel it came on:
    /// answered in the shutdown's NotifyingClients phase.
    pub(crate) shutdown_requester: Mutex<Option<(Message, Arc<dyn FrameSender>)>>,
    /// What the embedding process asked to be done in the Cleanup phase.
    pub(crate) cleanups: Mutex<Vec<(String, Cleanup)>>,
    /// The skill registry and executor; replaced when `[skills]` changes.
    skills: RwLock<Option<Arc<Skills>>>,
    /// Runs `!command` cells and command and session skills confined.
    sandbox: Option<Arc<Sandbox>>,
    /// Ticks when `skills` is replaced: MCP sessions tell their clients.
    skills_replaced: watch::Sender<u64>,
    /// MCP sessions carried by `mcp_request` (`skillctl mcp`).
    pub(crate) mcp: mcp_sessions::McpSessions,
    /// The MCP servers of `[mcp.servers]`, started on first use.
    mcp_clients: Arc<skillkernel_mcp::McpClients>,
}

/// Opens the skills, with the notebook's conversation-skill turns, and
/// logs what discovery found.
pub(crate) fn open_skills(
    setup: &SkillsSetup,
    executor: Option<Arc<Executor>>,
    conversations: Conversations,
    sandbox: Option<&Sandbox>,
) -> Skills {
    let (skills, report) = Skills::open_with(setup, executor);
    let skills = skills.carrying(conversations);
    if let Some(sandbox) = sandbox {
        // Trust given, withdrawn and refused go to the sandbox's audit log.
        skills.registry.trust().set_audit(sandbox.audit_log());
    }
    tracing::info!(
        skills = skills.registry.list().len(),
        failed = report.failed.len(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "skills discovered"
    );
    for failure in &report.failed {
        tracing::warn!(%failure, "skill did not load");
    }
    if let Some(why) = skills.registry.index_unusable() {
        tracing::warn!(reason = %why, "skill index unusable; discovery reads every manifest");
    }
    skills
}

/// Writes a skill's metrics and breaker to the session store whenever a
/// run of it ends (the executor's sink; it outlives reloads of the
/// skills, as the executor does).
pub(crate) struct SkillStateRecorder(pub(crate) std::sync::Weak<Shared>);

impl skillkernel_skills::exec::SkillStateSink for SkillStateRecorder {
    fn save(&self, skill: &str, state: &skillkernel_skills::exec::SavedSkill) {
        if let Some(shared) = self.0.upgrade() {
            shared.record_skill_state(skill, state);
        }
    }
}

/// Work the embedding process asks to run in the shutdown's Cleanup phase.
pub(crate) type Cleanup = Box<dyn FnOnce() + Send>;

impl Shared {
    /// Opens and restores the session store when the config asks for one
    /// (file I/O: called once, before serving).
    pub(crate) fn new(
        signer: Signer,
        config: KernelConfig,
        iopub: IopubChannel,
        stdin: Arc<dyn FrameSender>,
    ) -> (Shared, watch::Receiver<Option<ExitReason>>) {
        let session_id = uuid_like();
        let username = std::env::var("USER").unwrap_or_else(|_| "skillkernel".into());
        let (exit, exit_rx) = watch::channel(None);
        let iopub = Iopub::new(iopub, signer.clone(), session_id.clone(), username.clone());
        let live = RwLock::new(Live {
            command_timeout: config.command_timeout,
            limits: config.limits,
            shutdown: config.shutdown,
            models: config.models.clone(),
        });
        let (persistence, restored) = Persistence::open(config.persistence.as_ref());
        let (state, skill_turns, skill_states) = match restored {
            Some(mut restored) => {
                let turns = std::mem::take(&mut restored.skill_conversations);
                let states = std::mem::take(&mut restored.skill_states);
                (SessionState::restored(restored), turns, states)
            }
            None => Default::default(),
        };
        let state_dir = config.persistence.as_ref().map(|p| p.state_dir.clone());
        let health = HealthMonitor::start(config.health.clone(), state_dir);
        let sandbox = config
            .sandbox
            .clone()
            .map(|setup| Arc::new(Sandbox::new(setup)));
        let skills = config.skills.as_ref().map(|setup| {
            let conversations = Conversations::restored(skill_turns);
            let skills = open_skills(setup, None, conversations, sandbox.as_deref());
            // Metrics and breakers as the last process left them (its
            // runs write them as they end: see `SkillStateRecorder`).
            for (name, state) in &skill_states {
                skills.executor.restore(name, state);
            }
            Arc::new(skills)
        });
        let config_mcp = config.mcp;
        let mcp_clients = Arc::new(skillkernel_mcp::McpClients::new(
            config.mcp_servers.clone(),
            sandbox.clone(),
        ));
        let shared = Shared {
            session_id,
            username,
            signer,
            config,
            iopub,
            stdin,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            health,
            operations: Operations::default(),
            metrics: Default::default(),
            live,
            state: Mutex::new(state),
            persistence,
            running: Mutex::new(None),
            exit,
            stdin_waiters: Mutex::new(HashMap::new()),
            shutdown_requester: Mutex::new(None),
            cleanups: Mutex::new(Vec::new()),
            skills: RwLock::new(skills),
            sandbox,
            skills_replaced: watch::channel(0).0,
            mcp: mcp_sessions::McpSessions::new(config_mcp),
            mcp_clients,
        };
        shared.withhold_model_keys(shared.models().as_ref());
        (shared, exit_rx)
    }

    /// Keeps the model backends' API key variables out of every sandboxed
    /// program, whatever `[sandbox] env` or a skill allows.
    pub(crate) fn withhold_model_keys(&self, models: Option<&crate::Models>) {
        if let (Some(sandbox), Some(models)) = (&self.sandbox, models) {
            sandbox.withhold_env(models.registry.config().api_key_vars());
        }
    }

    /// The kernel's skills, if it has any.
    pub fn skills(&self) -> Option<Arc<Skills>> {
        read(&self.skills).clone()
    }

    /// The sandbox, if the kernel has one.
    pub fn sandbox(&self) -> Option<Arc<Sandbox>> {
        self.sandbox.clone()
    }

    /// The MCP servers of `[mcp.servers]`.
    pub fn mcp_clients(&self) -> &Arc<skillkernel_mcp::McpClients> {
        &self.mcp_clients
    }

    /// What skills' tool loops call MCP servers through; `None` when none
    /// is configured.
    pub(crate) fn external_tools(
        &self,
    ) -> Option<Arc<dyn skillkernel_skills::external::ExternalTools>> {
        if self.mcp_clients.is_empty() {
            return None;
        }
        let clients: Arc<dyn skillkernel_skills::external::ExternalTools> =
            self.mcp_clients.clone();
        Some(clients)
    }

    /// Replaces the skills (a reload that changed `[skills]`).
    pub(crate) fn set_skills(&self, skills: Option<Arc<Skills>>) {
        *write(&self.skills) = skills;
        self.skills_replaced.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Ticks whenever [`Shared::skills`] starts returning another registry.
    pub fn skills_replaced(&self) -> watch::Receiver<u64> {
        self.skills_replaced.subscribe()
    }

    /// Reads the session state under its lock (never await inside `read`).
    /// Changes go through the write-through methods in [`writes`], which
    /// persist what they change; nothing outside this module gets a
    /// mutable view.
    pub fn with_state<R>(&self, read: impl FnOnce(&SessionState) -> R) -> R {
        read(&lock(&self.state))
    }

    /// The execution count now.
    pub fn execution_count(&self) -> u64 {
        self.with_state(|s| s.execution_count)
    }

    /// A copy of session variable `name`.
    pub fn variable(&self, name: &str) -> Option<Value> {
        self.with_state(|s| s.variables.get(name).cloned())
    }

    /// The state's lock: for [`writes`] alone.
    fn state_mut(&self) -> MutexGuard<'_, SessionState> {
        lock(&self.state)
    }

    /// The reloadable settings, for a moment: never hold the guard across
    /// an await.
    fn live(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        read(&self.live)
    }

    /// Changes the reloadable settings.
    pub(crate) fn update_live(&self, change: impl FnOnce(&mut Live)) {
        change(&mut write(&self.live));
    }

    /// Bounds on inbound messages, as configured now.
    pub fn limits(&self) -> WireLimits {
        self.live().limits
    }

    /// How long a `!command` may run, as configured now.
    pub fn command_timeout(&self) -> Duration {
        self.live().command_timeout
    }

    /// How long the shutdown phases may take, as configured now.
    pub fn shutdown_settings(&self) -> ShutdownSettings {
        self.live().shutdown
    }

    /// The model backends, as configured now; `None` without any.
    pub fn models(&self) -> Option<Models> {
        self.live().models.clone()
    }

    /// Who the usage ledger records a model call under: the persisted
    /// session's name (the notebook's kernel) when there is one, else this
    /// process's session id; and the skill, when a skill made the call.
    pub fn usage_caller(&self, skill: Option<&str>) -> Caller {
        let session = match &self.config.persistence {
            Some(p) => p.session.clone(),
            None => self.session_id.clone(),
        };
        Caller {
            session,
            skill: skill.map(str::to_owned),
        }
    }

    /// The model this session's prompts use, if a model backend is set up.
    pub fn current_model(&self) -> Option<String> {
        let models = self.models()?;
        Some(
            self.with_state(|s| s.current_model.clone())
                .unwrap_or_else(|| models.default_model.clone()),
        )
    }

    /// Makes `spec` this session's model once a backend has it. A routing
    /// profile stays a profile (it is routed again for every prompt, so
    /// its fallback keeps working); a model is kept as `name@backend`.
    /// Returns the model now chosen and what the session keeps.
    pub async fn use_model(&self, spec: &str) -> Result<(ModelInfo, String), KernelError> {
        let models = self.models().ok_or(KernelError::NoModel)?;
        let route = models.registry.route(spec).await?;
        let info = route.provider.info(&route.model).await?;
        let kept = match &route.profile {
            Some(profile) => profile.clone(),
            None => route.spec(),
        };
        self.set_current_model(Some(kept.clone()));
        Ok((info, kept))
    }

    /// A fresh header from this kernel.
    pub fn header(&self, msg_type: &str) -> Header {
        Header::new(msg_type, &self.session_id, &self.username)
    }

    /// Builds the reply to `request` and sends it on `channel`.
    pub async fn reply(
        &self,
        channel: &dyn FrameSender,
        request: &Message,
        msg_type: &str,
        content: impl Serialize,
    ) {
        self.reply_with_metadata(channel, request, msg_type, content, serde_json::Map::new())
            .await;
    }

    /// [`Shared::reply`] with the reply's `metadata` set.
    pub async fn reply_with_metadata(
        &self,
        channel: &dyn FrameSender,
        request: &Message,
        msg_type: &str,
        content: impl Serialize,
        metadata: serde_json::Map<String, Value>,
    ) {
        let mut reply = request.child(self.header(msg_type), content);
        reply.metadata = metadata;
        if let Err(e) = channel.send(reply.encode(&self.signer)).await {
            tracing::warn!(error = %e, msg_type, "could not send reply");
        }
    }

    /// Registers the cell now running; returns its cancellation token.
    pub(crate) fn begin_cell(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *lock(&self.running) = Some(token.clone());
        token
    }

    pub(crate) fn end_cell(&self) {
        *lock(&self.running) = None;
    }

    /// Cancels the running cell, if any.
    pub fn interrupt(&self) {
        if let Some(token) = lock(&self.running).as_ref() {
            tracing::info!("interrupting the running cell");
            token.cancel();
        }
    }

    /// Tells [`crate::Kernel::wait`] to run the shutdown. The first
    /// request wins; later ones change nothing.
    pub fn request_exit(&self, reason: ExitReason) {
        self.exit.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
    }

    /// Whether a shutdown has begun: new work is refused from then on.
    pub fn exit_requested(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Kills the sandbox's programs (`!commands`, command skills) still
    /// running, and its sessions.
    pub(crate) fn kill_children(&self) {
        if let Some(sandbox) = &self.sandbox {
            sandbox.kill_all_now();
        }
    }
}

fn uuid_like() -> String {
    // A v4 UUID without pulling uuid into this crate: protocol's Header
    // already makes them; reuse it.
    Header::new("", "", "").msg_id
}
