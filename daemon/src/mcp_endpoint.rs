//! The MCP Streamable HTTP endpoint (`[mcp.server] listen`) and its
//! bearer token.
//!
//! The token lives in a file only its owner can read: read from
//! `token_file` when it exists (refused when group or others may read
//! it), else generated (244 random bits) into a new file with mode 0600.
//! Clients send it as `Authorization: Bearer <token>`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use skillkernel_kernel::KernelHandle;
use tokio_util::sync::CancellationToken;

use crate::config::McpServerConfig;

/// The token file when `token_file` is not set.
pub const TOKEN_FILE: &str = "mcp-token";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the MCP token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the MCP token file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the MCP token file {path} may be read by others (mode {mode:o}); run chmod 600 on it"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the MCP token file {path} is empty or holds spaces; delete it to have one made")]
    Malformed { path: PathBuf },
}

/// The bearer token in `path`, made there first when the file is missing.
pub fn token(path: &Path) -> Result<String, TokenError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(TokenError::Exposed {
                    path: path.to_owned(),
                    mode,
                });
            }
            let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
                path: path.to_owned(),
                source,
            })?;
            let token = text.trim();
            if token.is_empty() || token.contains(char::is_whitespace) {
                return Err(TokenError::Malformed {
                    path: path.to_owned(),
                });
            }
            Ok(token.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let write_error = |source| TokenError::Write {
                path: path.to_owned(),
                source,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(write_error)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(write_error)?;
            writeln!(file, "{token}").map_err(write_error)?;
            Ok(token)
        }
        Err(source) => Err(TokenError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Starts the endpoint when `listen` is set. A token or port that cannot
/// be had is logged, and the kernel serves without the endpoint.
pub async fn start(
    config: &McpServerConfig,
    state_dir: &Path,
    kernel: &KernelHandle,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let listen = config.listen.as_deref()?;
    let token_path = config
        .token_file
        .clone()
        .unwrap_or_else(|| state_dir.join(TOKEN_FILE));
    let token = match token(&token_path) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "MCP endpoint not started");
            return None;
        }
    };
    // Bound and served on the MCP worker, below the cells' priority.
    let (host, settings, hosts) = (
        kernel.mcp_host(),
        config.settings(),
        config.allowed_hosts.clone(),
    );
    let address = listen.to_owned();
    let bound = skillkernel_mcp::worker::spawn(async move {
        skillkernel_mcp::McpHttpServer::bind(&address, host, settings, &token, hosts).await
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match bound {
        Ok(server) => {
            let addr = server
                .local_addr()
                .map_or_else(|_| listen.to_owned(), |a| a.to_string());
            tracing::info!(
                address = %addr,
                token_file = %token_path.display(),
                "MCP endpoint listening on http://{addr}/mcp"
            );
            let serving = skillkernel_mcp::worker::spawn(server.serve(stop));
            Some(tokio::spawn(async move {
                let _ = serving.await;
            }))
        }
        Err(e) => {
            tracing::error!(listen, error = %e, "cannot serve MCP over HTTP; the kernel runs without it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_owner_only_then_read_back_and_an_exposed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/mcp-token");
        let made = token(&path).unwrap();
        assert_eq!(made.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(token(&path).unwrap(), made);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(token(&path), Err(TokenError::Exposed { .. })));
    }
}
