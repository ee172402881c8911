//! The daemon as an MCP client: the servers of `[mcp.servers]`, whose
//! tools skills call (`tools: [{mcp: NAME}]`) and cells call (`%mcp call`).
//!
//! A server starts on first use — a stdio server as a resident program in
//! the sandbox ([`launch`]), an HTTP server by connecting
//! ([`http_transport`]) — and its tools are listed once (again when it
//! says they changed). A server that dies is started again on its next
//! use; one that cannot start is not tried again for
//! [`RETRY_AFTER`], so a broken server costs a skill one clear error, not
//! a launch per call. Every error names the server. All stop at shutdown.

pub mod config;
mod http_transport;
mod launch;
mod status;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RoleClient, RunningService, ServiceExt};
use rmcp::ClientHandler;
use serde_json::Value;
use skillkernel_sandbox::resident::ResidentProcess;
use skillkernel_sandbox::Sandbox;
use skillkernel_skills::external::{ExternalResult, ExternalTool, ExternalTools};
use tokio_util::sync::CancellationToken;

pub use config::{ServerConfig, Transport};
pub use status::{CallOutcome, ServerState, ServerStatus, ServerTools, ToolInfo};

/// How long a server that failed to start is left alone.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The configured servers.
pub struct McpClients {
    servers: BTreeMap<String, Arc<Server>>,
    sandbox: Option<Arc<Sandbox>>,
}

struct Server {
    name: String,
    config: ServerConfig,
    /// Set by [`McpClients::stop_all`]: nothing starts after it.
    closed: Arc<AtomicBool>,
    live: tokio::sync::Mutex<Option<Live>>,
    record: std::sync::Mutex<status::Record>,
}

/// A started server.
struct Live {
    service: RunningService<RoleClient, Notices>,
    /// A stdio server's program (killed when this is dropped).
    process: Option<ResidentProcess>,
    tools: Vec<rmcp::model::Tool>,
    /// Set when the server says its tools changed.
    tools_changed: Arc<AtomicBool>,
}

impl Live {
    fn ended(&mut self) -> bool {
        self.service.peer().is_transport_closed()
            || self.service.is_closed()
            || self
                .process
                .as_mut()
                .is_some_and(|p| p.exit_status().is_some())
    }

    /// Why it ended, from the program's status and stderr.
    fn obituary(&mut self) -> String {
        match self.process.as_mut() {
            None => "the connection ended".into(),
            Some(process) => exit_text(process).unwrap_or_else(|| "its connection closed".into()),
        }
    }
}

/// How the program ended and the end of its stderr, if it has ended.
fn exit_text(process: &mut ResidentProcess) -> Option<String> {
    let status = process.exit_status()?;
    let tail = process.stderr_tail();
    let last: Vec<&str> = tail.trim().lines().rev().take(3).collect();
    let last: Vec<&str> = last.into_iter().rev().collect();
    Some(if last.is_empty() {
        format!("it exited ({status})")
    } else {
        format!(
            "it exited ({status}); its stderr ends: {}",
            last.join(" | ")
        )
    })
}

/// [`exit_text`], waiting briefly: the pipe closes a moment before the
/// program's exit is seen.
async fn wait_exit_text(process: &mut ResidentProcess) -> Option<String> {
    for _ in 0..20 {
        if process.exit_status().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    exit_text(process)
}

/// What a server sends on its own that matters here.
struct Notices {
    tools_changed: Arc<AtomicBool>,
}

impl ClientHandler for Notices {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("skillkernel", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.store(true, Ordering::SeqCst);
    }
}

impl McpClients {
    /// The servers of `config` (each already checked); `sandbox` launches
    /// stdio servers (without one they are refused).
    pub fn new(config: BTreeMap<String, ServerConfig>, sandbox: Option<Arc<Sandbox>>) -> Self {
        let closed = Arc::new(AtomicBool::new(false));
        let servers = config
            .into_iter()
            .map(|(name, config)| {
                let record = status::Record::default();
                let server = Server {
                    name: name.clone(),
                    config,
                    closed: Arc::clone(&closed),
                    live: tokio::sync::Mutex::new(None),
                    record: std::sync::Mutex::new(record),
                };
                (name, Arc::new(server))
            })
            .collect();
        McpClients { servers, sandbox }
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Each server's state, without starting any.
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers.values().map(|s| s.status()).collect()
    }

    fn server(&self, name: &str) -> Result<&Arc<Server>, String> {
        self.servers.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.servers.keys().map(String::as_str).collect();
            if known.is_empty() {
                format!("there is no MCP server `{name}`: none is configured ([mcp.servers] in the daemon's config)")
            } else {
                format!("there is no MCP server `{name}`; the configured ones are: {}", known.join(", "))
            }
        })
    }

    /// `server`'s tools (started if needed).
    pub async fn list_tools(&self, server: &str) -> Result<Vec<rmcp::model::Tool>, String> {
        let server = self.server(server)?;
        let (peer, changed, tools) = {
            let live = server.ensure(self.sandbox.as_deref()).await?;
            let Some(running) = live.as_ref() else {
                return Err(format!("MCP server `{}` is not running", server.name));
            };
            if !running.tools_changed.load(Ordering::SeqCst) {
                return Ok(running.tools.clone());
            }
            (
                running.service.peer().clone(),
                Arc::clone(&running.tools_changed),
                running.tools.clone(),
            )
        };
        // Listed again without the lock: a slow server holds up no one.
        changed.store(false, Ordering::SeqCst);
        let listed =
            tokio::time::timeout(server.config.call_timeout(), peer.list_all_tools()).await;
        match listed {
            Ok(Ok(fresh)) => {
                let mut live = server.live.lock().await;
                if let Some(running) = live.as_mut() {
                    if Arc::ptr_eq(&running.tools_changed, &changed) {
                        running.tools = fresh.clone();
                    }
                }
                server.note_tools(&fresh);
                Ok(fresh)
            }
            Ok(Err(e)) => {
                changed.store(true, Ordering::SeqCst);
                tracing::warn!(server = %server.name, error = %e, "MCP server did not list its changed tools; the earlier list is used");
                Ok(tools)
            }
            Err(_) => {
                changed.store(true, Ordering::SeqCst);
                tracing::warn!(server = %server.name, "MCP server did not list its changed tools in time; the earlier list is used");
                Ok(tools)
            }
        }
    }

    /// The tools of `server`, or of every server (each started if
    /// needed; one that cannot start says why in its entry).
    pub async fn catalog(&self, server: Option<&str>) -> Result<Vec<ServerTools>, String> {
        let names: Vec<String> = match server {
            Some(name) => vec![self.server(name)?.name.clone()],
            None => self.servers.keys().cloned().collect(),
        };
        let listed = names.into_iter().map(|name| async move {
            match self.list_tools(&name).await {
                Ok(tools) => ServerTools {
                    server: name,
                    tools: tools.iter().map(ToolInfo::of).collect(),
                    error: None,
                },
                Err(error) => ServerTools {
                    server: name,
                    tools: Vec::new(),
                    error: Some(error),
                },
            }
        });
        Ok(futures::future::join_all(listed).await)
    }

    /// Calls `tool` of `server` with `arguments`; `cancel` stops the call
    /// (the server is told with `notifications/cancelled`).
    pub async fn call_tool(
        &self,
        server: &str,
        tool: &str,
        arguments: Value,
        cancel: CancellationToken,
    ) -> Result<CallOutcome, String> {
        let server = self.server(server)?;
        let arguments = match arguments {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            other => {
                return Err(format!(
                    "the arguments of `{}.{tool}` must be a JSON object, not {other}",
                    server.name
                ))
            }
        };
        let started = tokio::select! {
            started = server.ensure(self.sandbox.as_deref()) => started,
            _ = cancel.cancelled() => {
                return Err(format!("the call of `{}.{tool}` was interrupted", server.name));
            }
        };
        let peer = match started?.as_ref() {
            Some(running) => running.service.peer().clone(),
            None => return Err(format!("MCP server `{}` is not running", server.name)),
        };
        let started = Instant::now();
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let timeout = server.config.call_timeout();
        let called = tokio::select! {
            called = tokio::time::timeout(timeout, peer.call_tool(params)) => called,
            _ = cancel.cancelled() => {
                return Err(format!("the call of `{}.{tool}` was interrupted", server.name));
            }
        };
        match called {
            Ok(Ok(result)) => Ok(CallOutcome::of(result, started.elapsed())),
            Ok(Err(e)) => Err(server.call_failed(tool, e).await),
            Err(_) => Err(format!(
                "MCP server `{}` did not answer `{tool}` within {} s (call_timeout_secs); the call was cancelled",
                server.name,
                timeout.as_secs()
            )),
        }
    }

    /// Stops every server, all at once, and starts none after (shutdown).
    pub async fn stop_all(&self) {
        let stops = self.servers.values().map(|server| async move {
            server.closed.store(true, Ordering::SeqCst);
            let live = server.live.lock().await.take();
            if let Some(mut live) = live {
                let _ = live
                    .service
                    .close_with_timeout(Duration::from_secs(2))
                    .await;
                drop(live.process.take());
                server.record().state = ServerState::Stopped;
                tracing::info!(server = %server.name, "MCP server stopped");
            }
        });
        futures::future::join_all(stops).await;
    }
}

impl Server {
    fn record(&self) -> std::sync::MutexGuard<'_, status::Record> {
        skillkernel_stdx::lock(&self.record)
    }

    fn status(&self) -> ServerStatus {
        // A server that died since its last use shows as crashed.
        if let Ok(mut live) = self.live.try_lock() {
            if let Some(running) = live.as_mut() {
                if running.ended() {
                    let why = running.obituary();
                    self.record().crashed(why);
                    *live = None;
                }
            }
        }
        self.record().status(&self.name, &self.config)
    }

    fn note_tools(&self, tools: &[rmcp::model::Tool]) {
        self.record().tools = tools.iter().map(|t| t.name.to_string()).collect();
    }

    /// The running server, started (again) if it is not.
    async fn ensure(
        &self,
        sandbox: Option<&Sandbox>,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Live>>, String> {
        let mut live = self.live.lock().await;
        if let Some(running) = live.as_mut() {
            if !running.ended() {
                return Ok(live);
            }
            let why = running.obituary();
            tracing::warn!(server = %self.name, reason = %why, "MCP server ended; starting it again");
            self.record().crashed(why);
            *live = None;
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(format!(
                "MCP server `{}` is not started: the daemon is shutting down",
                self.name
            ));
        }
        if let Some((at, error)) = self.record().failed_recently(RETRY_AFTER) {
            return Err(format!(
                "MCP server `{}` could not start {} s ago: {error}",
                self.name,
                at.elapsed().as_secs()
            ));
        }
        self.record().state = ServerState::Starting;
        // A start abandoned half-way (an interrupt) leaves it stopped,
        // not starting forever; its process dies with the dropped future.
        let mut abandoned = Abandoned(Some(self));
        let started =
            tokio::time::timeout(self.config.startup_timeout(), self.start(sandbox)).await;
        abandoned.0 = None;
        let started = match started {
            Ok(started) => started,
            Err(_) => Err(format!(
                "it did not finish starting (launch and `initialize`) within {} s (startup_timeout_secs)",
                self.config.startup_timeout().as_secs()
            )),
        };
        match started {
            Ok(running) => {
                tracing::info!(server = %self.name, tools = running.tools.len(), "MCP server started");
                let pid = running.process.as_ref().and_then(ResidentProcess::id);
                self.record().started(pid, &running.tools);
                *live = Some(running);
                Ok(live)
            }
            Err(error) => {
                tracing::warn!(server = %self.name, %error, "MCP server could not start");
                self.record().failed(error.clone());
                Err(format!(
                    "MCP server `{}` could not start: {error}",
                    self.name
                ))
            }
        }
    }

    async fn start(&self, sandbox: Option<&Sandbox>) -> Result<Live, String> {
        let tools_changed = Arc::new(AtomicBool::new(false));
        let notices = Notices {
            tools_changed: Arc::clone(&tools_changed),
        };
        let (service, mut process) = match self.config.transport() {
            Transport::Stdio => {
                let sandbox = sandbox.ok_or_else(|| {
                    "this kernel has no sandbox, and stdio servers run only in one".to_owned()
                })?;
                let mut process = launch::start(sandbox, &self.name, &self.config).await?;
                let Some(io) = process.take_io() else {
                    return Err("its pipes were not created".into());
                };
                match notices.serve(io).await {
                    Ok(service) => (service, Some(process)),
                    Err(e) => {
                        let why = wait_exit_text(&mut process).await;
                        return Err(format!(
                            "`initialize` failed: {}",
                            why.unwrap_or_else(|| e.to_string())
                        ));
                    }
                }
            }
            Transport::Http => {
                let url = self.config.url.as_deref().unwrap_or_default();
                let token = match &self.config.token_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!("its token variable `{var}` (token_env) is not set in the daemon's environment")
                    })?),
                    None => None,
                };
                let transport = http_transport::HttpTransport::new(
                    url,
                    token,
                    self.config.call_timeout() + Duration::from_secs(5),
                )
                .map_err(|e| e.to_string())?;
                let service = notices
                    .serve(transport)
                    .await
                    .map_err(|e| format!("`initialize` failed: {e}"))?;
                (service, None)
            }
        };
        let tools = match service.peer().list_all_tools().await {
            Ok(tools) => tools,
            Err(e) => {
                let why = match process.as_mut() {
                    Some(process) => wait_exit_text(process).await,
                    None => None,
                };
                return Err(format!(
                    "it did not list its tools: {}",
                    why.unwrap_or_else(|| e.to_string())
                ));
            }
        };
        Ok(Live {
            service,
            process,
            tools,
            tools_changed,
        })
    }

    /// The error of a call that got no answer; a server that died is
    /// marked so its next use starts it again.
    async fn call_failed(&self, tool: &str, error: rmcp::ServiceError) -> String {
        let transport_ended = matches!(
            error,
            rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_)
        );
        if !transport_ended {
            return format!(
                "MCP server `{}` failed the call of `{tool}`: {error}",
                self.name
            );
        }
        let mut live = self.live.lock().await;
        if let Some(running) = live.as_mut() {
            if let Some(process) = running.process.as_mut() {
                wait_exit_text(process).await;
            }
            if running.ended() {
                let why = running.obituary();
                self.record().crashed(why.clone());
                *live = None;
                return format!(
                    "MCP server `{}` ended during the call of `{tool}`: {why}; it starts again on its next use",
                    self.name
                );
            }
        }
        format!(
            "MCP server `{}` failed the call of `{tool}`: {error}",
            self.name
        )
    }
}

/// Marks a server whose start was abandoned as stopped.
struct Abandoned<'a>(Option<&'a Server>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(server) = self.0 {
            let mut record = server.record();
            if record.state == ServerState::Starting {
                record.state = ServerState::Stopped;
            }
        }
    }
}

impl ExternalTools for McpClients {
    fn tools<'a>(&'a self, server: &'a str) -> BoxFuture<'a, Result<Vec<ExternalTool>, String>> {
        Box::pin(async move {
            let tools = self.list_tools(server).await?;
            Ok(tools
                .iter()
                .map(ToolInfo::of)
                .map(|t| ExternalTool {
                    name: t.name,
                    description: t.description,
                    input_schema: t.input_schema,
                })
                .collect())
        })
    }

    fn call<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        arguments: Value,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExternalResult, String>> {
        Box::pin(async move {
            let outcome = self.call_tool(server, tool, arguments, cancel).await?;
            Ok(ExternalResult {
                ok: !outcome.is_error,
                text: outcome.text,
            })
        })
    }
}
