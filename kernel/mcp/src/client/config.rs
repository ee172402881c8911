//! `[mcp.servers.NAME]`: an MCP server whose tools skills may call.
//!
//! ```toml
//! [mcp.servers.time]                 # stdio: launched in the sandbox
//! command = "mcp-server-time"        # a path, or a name on the daemon's PATH
//! args = ["--local-timezone", "UTC"]
//! network = false                    # true: all; ["api.example.com"]: those hosts, by proxy
//! read = []                          # paths readable beyond the system's and its install
//! write = []                         # paths writable beyond the working directory
//! env = { LOG_LEVEL = "warning" }    # variables set for it
//! env_allow = []                     # the daemon's variables it keeps
//!
//! [mcp.servers.search]               # Streamable HTTP
//! url = "http://127.0.0.1:9000/mcp"
//! token_env = "SEARCH_MCP_TOKEN"     # sent as `Authorization: Bearer …`
//! ```

use skillkernel_sandbox::proxy::NetworkGrant;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One configured server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The program of a stdio server.
    pub command: Option<String>,
    pub args: Vec<String>,
    /// What network the program may use: none, all, or hosts by proxy.
    pub network: NetworkGrant,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub env_allow: Vec<String>,
    /// The endpoint of a Streamable HTTP server.
    pub url: Option<String>,
    /// The variable holding its bearer token.
    pub token_env: Option<String>,
    /// How long starting (launch and `initialize`) may take.
    pub startup_timeout_secs: u64,
    /// How long one tool call may take (a skill's `tool_timeout_secs`
    /// bounds calls from its loop too).
    pub call_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            command: None,
            args: Vec::new(),
            network: NetworkGrant::Nothing,
            read: Vec::new(),
            write: Vec::new(),
            env: BTreeMap::new(),
            env_allow: Vec::new(),
            url: None,
            token_env: None,
            startup_timeout_secs: 30,
            call_timeout_secs: 300,
        }
    }
}

/// How a server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    Http,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
    }
}

impl ServerConfig {
    pub fn transport(&self) -> Transport {
        if self.url.is_some() {
            Transport::Http
        } else {
            Transport::Stdio
        }
    }

    /// The command line or the URL, for listings.
    pub fn target(&self) -> String {
        match (&self.url, &self.command) {
            (Some(url), _) => url.clone(),
            (None, Some(command)) => std::iter::once(command.as_str())
                .chain(self.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            (None, None) => String::new(),
        }
    }

    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout_secs.max(1))
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_secs.max(1))
    }

    /// What is wrong with server `name`'s settings, if anything.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if !skillkernel_skills::external::is_server_name(name) {
            return Err(format!(
                "[mcp.servers.{name}]: a server's name is 1 to 32 letters, digits, `-` and `_` \
                 (no `__`): skills call its tools `{name}__TOOL`"
            ));
        }
        for (key, secs) in [
            ("startup_timeout_secs", self.startup_timeout_secs),
            ("call_timeout_secs", self.call_timeout_secs),
        ] {
            if secs == 0 {
                return Err(format!(
                    "[mcp.servers.{name}]: `{key}` is 0; give it at least a second"
                ));
            }
        }
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => Err(format!(
                "[mcp.servers.{name}] has both `command` and `url`; a server is launched (command) or reached (url)"
            )),
            (None, None) => Err(format!(
                "[mcp.servers.{name}] needs `command` (a stdio server) or `url` (Streamable HTTP)"
            )),
            (Some(command), None) if command.trim().is_empty() => {
                Err(format!("[mcp.servers.{name}]: `command` is empty"))
            }
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "[mcp.servers.{name}]: url = {url:?} is not an http:// or https:// address"
                    ));
                }
                let stdio_only = [
                    ("args", !self.args.is_empty()),
                    ("network", self.network != NetworkGrant::Nothing),
                    ("read", !self.read.is_empty()),
                    ("write", !self.write.is_empty()),
                    ("env", !self.env.is_empty()),
                    ("env_allow", !self.env_allow.is_empty()),
                ];
                match stdio_only.iter().find(|(_, set)| *set) {
                    Some((key, _)) => Err(format!(
                        "[mcp.servers.{name}]: `{key}` is for a launched server, and this one has a `url`"
                    )),
                    None => Ok(()),
                }
            }
            (Some(_), None) if self.token_env.is_some() => Err(format!(
                "[mcp.servers.{name}]: `token_env` is for a server with a `url`"
            )),
            (Some(_), None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_launched_or_reached_and_says_which_settings_do_not_fit() {
        let stdio = ServerConfig {
            command: Some("mcp-server-time".into()),
            ..ServerConfig::default()
        };
        assert!(stdio.check("time").is_ok());
        assert_eq!(stdio.transport(), Transport::Stdio);
        let both = ServerConfig {
            url: Some("http://127.0.0.1:1/mcp".into()),
            ..stdio.clone()
        };
        assert!(both.check("x").unwrap_err().contains("both"));
        assert!(ServerConfig::default()
            .check("x")
            .unwrap_err()
            .contains("needs `command`"));
        let http = ServerConfig {
            url: Some("http://127.0.0.1:1/mcp".into()),
            network: NetworkGrant::Everything,
            ..ServerConfig::default()
        };
        assert!(http.check("x").unwrap_err().contains("`network`"));
        assert!(stdio.check("a__b").unwrap_err().contains("no `__`"));
        let ftp = ServerConfig {
            url: Some("ftp://x".into()),
            ..ServerConfig::default()
        };
        assert!(ftp.check("x").unwrap_err().contains("not an http"));
    }
}
