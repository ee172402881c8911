//! Jupyter connection files: where the five sockets listen and the key that
//! signs messages.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::signing::{Signer, SIGNATURE_SCHEME};

/// Why a connection file could not be used.
#[derive(Debug, Error)]
pub enum ConnectionError {
    #[error("cannot read connection file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connection file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "connection file {path} asks for signature_scheme `{scheme}`; \
         skillkernel supports only `hmac-sha256` (or an empty key for no signing)"
    )]
    UnsupportedScheme { path: PathBuf, scheme: String },
    #[error(
        "connection file {path} uses transport `{transport}`; skillkernel supports only `tcp`"
    )]
    UnsupportedTransport { path: PathBuf, transport: String },
    #[error("cannot write connection file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The contents of a connection file, as Jupyter writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    #[serde(default = "default_transport")]
    pub transport: String,
    pub ip: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_name: Option<String>,
    /// Keys other tools add (jupyter_client writes some); kept on rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_transport() -> String {
    "tcp".into()
}

fn default_scheme() -> String {
    SIGNATURE_SCHEME.into()
}

/// The five channels a connection file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelPort {
    Shell,
    IoPub,
    Stdin,
    Control,
    Heartbeat,
}

impl ConnectionInfo {
    /// A connection on `ip` with every port 0 (to be chosen at bind time) and
    /// a fresh random key.
    pub fn new_random(ip: &str, kernel_name: &str) -> Self {
        ConnectionInfo {
            transport: default_transport(),
            ip: ip.to_owned(),
            shell_port: 0,
            iopub_port: 0,
            stdin_port: 0,
            control_port: 0,
            hb_port: 0,
            signature_scheme: default_scheme(),
            key: random_key(),
            kernel_name: Some(kernel_name.to_owned()),
            extra: Map::new(),
        }
    }

    /// Reads and checks a connection file.
    pub fn read(path: &Path) -> Result<Self, ConnectionError> {
        let text = fs::read(path).map_err(|source| ConnectionError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses connection file text; `path` is for error messages.
    pub fn parse(text: &[u8], path: &Path) -> Result<Self, ConnectionError> {
        let info: ConnectionInfo =
            serde_json::from_slice(text).map_err(|source| ConnectionError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if !info.key.is_empty() && info.signature_scheme != SIGNATURE_SCHEME {
            return Err(ConnectionError::UnsupportedScheme {
                path: path.to_owned(),
                scheme: info.signature_scheme,
            });
        }
        if info.transport != "tcp" {
            return Err(ConnectionError::UnsupportedTransport {
                path: path.to_owned(),
                transport: info.transport,
            });
        }
        Ok(info)
    }

    /// Writes the file with mode 0600 (it holds the signing key), atomically.
    pub fn write(&self, path: &Path) -> Result<(), ConnectionError> {
        let err = |source| ConnectionError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir).map_err(err)?;
            }
        }
        let tmp = path.with_extension("json.tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(e.into()))?;
        file.write_all(&text).map_err(err)?;
        file.sync_all().map_err(err)?;
        fs::rename(&tmp, path).map_err(err)
    }

    /// The signer for this connection's key.
    pub fn signer(&self) -> Signer {
        Signer::new(self.key.as_bytes())
    }

    pub fn port(&self, channel: ChannelPort) -> u16 {
        match channel {
            ChannelPort::Shell => self.shell_port,
            ChannelPort::IoPub => self.iopub_port,
            ChannelPort::Stdin => self.stdin_port,
            ChannelPort::Control => self.control_port,
            ChannelPort::Heartbeat => self.hb_port,
        }
    }

    pub fn set_port(&mut self, channel: ChannelPort, port: u16) {
        match channel {
            ChannelPort::Shell => self.shell_port = port,
            ChannelPort::IoPub => self.iopub_port = port,
            ChannelPort::Stdin => self.stdin_port = port,
            ChannelPort::Control => self.control_port = port,
            ChannelPort::Heartbeat => self.hb_port = port,
        }
    }

    /// `tcp://ip:port` for `channel`; IPv6 addresses are bracketed.
    pub fn endpoint(&self, channel: ChannelPort) -> String {
        let port = self.port(channel);
        if self.ip.contains(':') && !self.ip.starts_with('[') {
            format!("{}://[{}]:{}", self.transport, self.ip, port)
        } else {
            format!("{}://{}:{}", self.transport, self.ip, port)
        }
    }
}

/// 32 random bytes, hex-encoded: the session key for a new connection file.
pub fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel-x.json");
        let mut info = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
        info.shell_port = 5555;
        info.write(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ConnectionInfo::read(&path).unwrap(), info);
        assert_eq!(info.key.len(), 64);
    }

    #[test]
    fn unknown_signature_scheme_is_refused_clearly() {
        let text = br#"{"ip":"127.0.0.1","shell_port":1,"iopub_port":2,"stdin_port":3,
            "control_port":4,"hb_port":5,"key":"abc","signature_scheme":"hmac-md5"}"#;
        let err = ConnectionInfo::parse(text, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("hmac-md5"), "{err}");
        assert!(err.to_string().contains("hmac-sha256"), "{err}");
    }

    #[test]
    fn jupyter_written_file_keeps_unknown_keys() {
        let text = br#"{"ip":"127.0.0.1","shell_port":1,"iopub_port":2,"stdin_port":3,
            "control_port":4,"hb_port":5,"key":"abc","signature_scheme":"hmac-sha256",
            "transport":"tcp","kernel_name":"skillkernel","jupyter_session":"nb.ipynb"}"#;
        let info = ConnectionInfo::parse(text, Path::new("c.json")).unwrap();
        assert_eq!(info.extra["jupyter_session"], "nb.ipynb");
        assert_eq!(info.endpoint(ChannelPort::Control), "tcp://127.0.0.1:4");
    }
}
