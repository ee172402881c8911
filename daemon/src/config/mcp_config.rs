//! `[mcp]`: the daemon as an MCP server (`[mcp.server]`).
//!
//! ```toml
//! [mcp.server]
//! listen = "127.0.0.1:8765"   # Streamable HTTP at http://127.0.0.1:8765/mcp; off unless set
//! token_file = "/path/token"   # default <state_dir>/mcp-token, made 0600 when missing
//! run_command = false          # offer skillkernel_run_command (a sandboxed shell command)
//! list_models = false          # offer skillkernel_list_models
//! allow_remote = false         # true to listen on an address that is not loopback
//! allowed_hosts = []           # Host header values accepted besides loopback names
//! ```
//!
//! `skillctl mcp` (stdio) needs none of this: it reaches the daemon over
//! the wire protocol.
//!
//! `[mcp.servers.NAME]`: the other way, MCP servers whose tools skills
//! and cells call (see [`skillkernel_mcp::client::config`]):
//!
//! ```toml
//! [mcp.servers.time]
//! command = "mcp-server-time"      # stdio, launched in the sandbox
//! [mcp.servers.search]
//! url = "http://127.0.0.1:9000/mcp" # Streamable HTTP
//! token_env = "SEARCH_MCP_TOKEN"
//! ```
//!
//! Both take effect at the next start.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    pub server: McpServerConfig,
    /// The MCP servers skills may use, by name.
    pub servers: std::collections::BTreeMap<String, skillkernel_mcp::ServerConfig>,
}

impl McpConfig {
    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        self.server
            .check()
            .map_err(|e| format!("[mcp.server] {e}"))?;
        for (name, server) in &self.servers {
            server.check(name)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpServerConfig {
    /// `host:port` of the Streamable HTTP endpoint; `None`: no endpoint.
    pub listen: Option<String>,
    /// Where the bearer token is read from (or written, 0600, when the
    /// file does not exist); default `<state_dir>/mcp-token`.
    pub token_file: Option<PathBuf>,
    /// Offer `skillkernel_run_command` to MCP clients.
    pub run_command: bool,
    /// Offer `skillkernel_list_models` to MCP clients.
    pub list_models: bool,
    /// Allow a `listen` address that is not loopback.
    pub allow_remote: bool,
    /// `Host` header values accepted besides `localhost`, `127.0.0.1` and
    /// `::1` (the names clients use to reach a non-loopback bind).
    pub allowed_hosts: Vec<String>,
}

impl McpServerConfig {
    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        let Some(listen) = &self.listen else {
            return Ok(());
        };
        let addr: SocketAddr = listen.parse().map_err(|_| {
            format!("listen = {listen:?} is not an address with a port, like \"127.0.0.1:8765\"")
        })?;
        if !addr.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "listen = {listen:?} is not a loopback address: MCP clients elsewhere could run \
                 skills; set allow_remote = true to mean it"
            ));
        }
        Ok(())
    }

    /// What the server offers beyond the skills.
    pub fn settings(&self) -> skillkernel_mcp::ServerSettings {
        skillkernel_mcp::ServerSettings {
            run_command: self.run_command,
            list_models: self.list_models,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_bind_needs_allow_remote_and_loopback_does_not() {
        let mut config = McpServerConfig {
            listen: Some("127.0.0.1:0".into()),
            ..McpServerConfig::default()
        };
        assert_eq!(config.check(), Ok(()));
        config.listen = Some("0.0.0.0:8765".into());
        assert!(config.check().unwrap_err().contains("allow_remote"));
        config.allow_remote = true;
        assert_eq!(config.check(), Ok(()));
        config.listen = Some("localhost".into());
        assert!(config.check().unwrap_err().contains("with a port"));
    }
}
