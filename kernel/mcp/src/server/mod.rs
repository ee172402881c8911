//! The MCP server: the kernel's skills for any MCP client.
//!
//! One [`SkillServer`] serves one MCP session — a Streamable HTTP session
//! or one `skillkernel mcp` bridge — and keeps that client's own state
//! (its conversation skills' turns), apart from the notebook's and from
//! every other client's. What it offers follows the registry as it is at
//! each request:
//!
//! * every enabled skill is a **tool** ([`catalog`]); calling it runs the
//!   skill ([`call`]) with progress notifications while it streams and
//!   the request's cancellation interrupting it;
//! * every enabled skill that makes one model call is a **prompt** (its
//!   rendered messages);
//! * the files of every enabled `SKILL.md` skill are **resources**
//!   ([`resources`]);
//! * with `[mcp.server]` turned on, `skillkernel_run_command` runs a shell
//!   command in the sandbox and `skillkernel_list_models` lists the models
//!   ([`extras`]).
//!
//! When the registry changes (reload, enable, disable, load, unload) the
//! client is sent `notifications/tools/list_changed`, and the same for
//! prompts and resources.
//!
//! Sessions carry the client's state, and the `2026-07-28` revision of MCP
//! removed sessions, so the server speaks the revisions with the
//! `initialize` handshake (up to `2025-11-25`); clients of the newer
//! revision fall back to it (see `docs/mcp.md`).

pub mod call;
pub mod catalog;
pub mod extras;
pub mod resources;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use skillkernel_skills::service::Conversations;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::host::Host;

/// What `[mcp.server]` turns on beyond the skills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// Offer `skillkernel_run_command` (a shell command in the sandbox).
    pub run_command: bool,
    /// Offer `skillkernel_list_models`.
    pub list_models: bool,
}

/// One MCP client's state.
pub struct Session {
    /// Names the session in logs and in the usage ledger (`mcp-<n>`).
    pub id: String,
    /// The client's conversation skills' turns.
    pub conversations: Conversations,
}

/// The MCP server of one session. See the module docs.
pub struct SkillServer {
    host: Arc<dyn Host>,
    settings: ServerSettings,
    session: Arc<Session>,
    /// Cancelled when the session's server is dropped: ends its watcher.
    _alive: DropGuard,
    alive: CancellationToken,
}

/// Numbers the sessions of this process.
static SESSIONS: AtomicU64 = AtomicU64::new(1);

impl SkillServer {
    pub fn new(host: Arc<dyn Host>, settings: ServerSettings) -> SkillServer {
        let alive = CancellationToken::new();
        SkillServer {
            host,
            settings,
            session: Arc::new(Session {
                id: format!("mcp-{}", SESSIONS.fetch_add(1, Ordering::Relaxed)),
                conversations: Conversations::default(),
            }),
            _alive: alive.clone().drop_guard(),
            alive,
        }
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

impl ServerHandler for SkillServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "skillkernel",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .with_instructions(
                "Each tool runs one skill of this skillkernel daemon: pass the text to work on \
                 as `input` and the skill's parameters beside it. Prompts are the skills' \
                 rendered prompts; resources are the files of its Agent Skills.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        tracing::info!(session = %self.session.id, "MCP client initialized");
        tokio::spawn(announce_changes(
            Arc::clone(&self.host),
            context.peer,
            self.alive.clone(),
        ));
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = catalog::tools(self.host.as_ref()).await;
        tools.extend(extras::tools(self.settings));
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.clone().unwrap_or_default();
        if let Some(extra) = extras::Extra::named(&request.name, self.settings) {
            let _operation = call::begin(self.host.as_ref(), &request.name)?;
            return Ok(extras::call(self.host.as_ref(), extra, arguments, &context)
                .await
                .into());
        }
        call::run_skill(&self.host, &self.session, &request.name, arguments, context)
            .await
            .map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(
            catalog::prompts(self.host.as_ref()).await,
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        catalog::get_prompt(self.host.as_ref(), request)
            .await
            .map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(
            resources::list(self.host.as_ref()).await,
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(self.host.as_ref(), &request.uri)
            .await
            .map(Into::into)
    }
}

/// Sends the list-changed notifications while the session lives: on each
/// change of the registry, and when the registry itself is replaced.
async fn announce_changes(host: Arc<dyn Host>, peer: Peer<RoleServer>, alive: CancellationToken) {
    let mut replaced = host.skills_replaced();
    loop {
        let mut changes = host.skills().map(|s| s.registry.changes());
        let changed = async {
            match changes.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = alive.cancelled() => return,
            ok = changed => if !ok { continue },
            r = replaced.changed() => if r.is_err() { return },
        }
        // Let a burst of changes (a reload touches many skills) settle.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let sent = async {
            peer.notify_tool_list_changed().await?;
            peer.notify_prompt_list_changed().await?;
            peer.notify_resource_list_changed().await
        };
        if sent.await.is_err() {
            // The client is gone.
            return;
        }
    }
}
