//! The Model Context Protocol, both ways, for the skill engine.
//!
//! * [`server`] serves the kernel's skills to MCP clients (agents such as
//!   Claude Code, Cursor, VS Code): skills as tools and prompts, Agent
//!   Skills' files as resources, each client with its own session state.
//!   Two transports reach it: Streamable HTTP ([`http`], bearer token,
//!   loopback unless configured otherwise) and the [`bridge`], which
//!   carries a session message by message over another protocol — the
//!   kernel's `mcp_request`, which `skillctl mcp` speaks for an agent that
//!   launches it as a stdio server.
//! * [`client`] is the other way: the servers of `[mcp.servers]`, launched
//!   in the sandbox (stdio) or reached over HTTP, whose tools skills call
//!   in their tool loop and cells call with `%mcp call`.
//! * [`worker`] is where MCP clients' work runs: a runtime of its own at a
//!   lower CPU priority, so agents never starve a notebook's cells.
//! * The process embedding the server gives it the skills, models and
//!   sandbox as they are now through [`host::Host`].
//!
//! The protocol itself is `rmcp`, the official Rust SDK: this crate maps
//! skills onto it and owns the transports' edges (the listener, the token,
//! the bridge's sessions).
//!
//! # What this crate must never do
//!
//! * Know Jupyter: no wire messages, no IOPub. The kernel adapts the
//!   bridge to its messages (`kernel/jupyter/src/mcp_request.rs`).
//! * Run a skill or a program any other way than the engine and the
//!   sandbox do for a notebook: same executor, same policies, same audit.
//! * Launch an MCP server outside the sandbox.
//! * Accept an HTTP request without the bearer token, or answer a
//!   `Host` it was not configured for.

pub mod bridge;
pub mod client;
pub mod host;
pub mod http;
pub mod jsonrpc;
pub mod server;
pub mod worker;

pub use bridge::{Bridge, BridgeError};
pub use client::{McpClients, ServerConfig};
pub use host::{Host, HostRefusal, OperationGuard};
pub use http::McpHttpServer;
pub use server::{ServerSettings, SkillServer};
