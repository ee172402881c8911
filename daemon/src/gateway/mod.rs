//! Enterprise Gateway launch mode: `skillkernel start --kernel-id ID
//! --response-address IP:PORT --public-key KEY --port-range L..U`, what a
//! kernelspec run by Jupyter Enterprise Gateway's remote process proxies
//! (distributed over SSH, Kubernetes, Docker, YARN) or by
//! `gateway_provisioners` passes, in place of a connection file.
//!
//! The contract, as EG's own Python launcher (`launch_ipykernel.py`)
//! keeps it:
//!
//! 1. bind the five channels on every address (`0.0.0.0`), at ports inside
//!    the range ([`ports`]);
//! 2. bind the communication port, also inside the range ([`comm`]);
//! 3. send the connection information — plus `pid`, `pgid`, `comm_port`
//!    and `kernel_id` — to the response address, encrypted with a fresh
//!    AES key wrapped in the gateway's public key ([`payload`]);
//! 4. serve, and obey the communication port: signals, and `shutdown`.
//!
//! A launch that cannot do 1–3 exits non-zero before serving anything, so
//! the gateway reports a failed launch; a kernel the gateway lets go or
//! loses shuts down (see [`comm`]). The process leads its own process
//! group, so the gateway's `kill -- -PGID` reaches it and its children
//! and nothing else of the shell that started it.

pub mod comm;
pub mod payload;
pub mod ports;

use std::time::Duration;

use serde_json::Value;
use skillkernel_protocol::ConnectionInfo;
use skillkernel_transport::zmq::ZmqTransport;
use skillkernel_transport::{KernelSockets, Transport, TransportError};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use crate::cli::GatewayArgs;
use payload::{GatewayKey, PayloadError};
use ports::{PortRange, PortRangeError};

/// Longest the response address may take to accept the connection info.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Rounds of choosing and binding the channels' ports.
const BIND_ATTEMPTS: u32 = 3;

/// Why a gateway launch failed.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("Enterprise Gateway launch: {missing} is missing (the kernelspec passes {placeholder}); the launch needs --kernel-id, --response-address and --public-key together")]
    Missing {
        missing: &'static str,
        placeholder: &'static str,
    },
    #[error("Enterprise Gateway launch: the response address {0:?} is not HOST:PORT")]
    ResponseAddress(String),
    #[error("Enterprise Gateway launch: {0} given without --response-address (RESPONSE_ADDRESS); the kernelspec must pass {{response_address}} too")]
    NoResponseAddress(&'static str),
    #[error("Enterprise Gateway launch: the kernel id {0:?} is not an id (letters, digits, '-', '_', '.'; at most 128)")]
    KernelId(String),
    #[error("Enterprise Gateway launch: cannot encode the connection information: {0}")]
    Encode(serde_json::Error),
    #[error("Enterprise Gateway launch: {0}")]
    Key(#[from] PayloadError),
    #[error("Enterprise Gateway launch: {0}")]
    Ports(#[from] PortRangeError),
    #[error("Enterprise Gateway launch: cannot bind the kernel's channels in the port range: {0}")]
    Bind(TransportError),
    #[error("Enterprise Gateway launch: cannot listen on the communication port: {0}")]
    Comm(std::io::Error),
    #[error("Enterprise Gateway launch: cannot send the connection information to the response address {address}: {reason}; the gateway is gone or the address is wrong — exiting without serving")]
    Respond { address: String, reason: String },
}

/// A validated gateway launch.
#[derive(Debug, Clone)]
pub struct Launch {
    pub kernel_id: String,
    response_host: String,
    response_port: u16,
    key: GatewayKey,
    pub ports: PortRange,
    pub orphan_timeout: Option<Duration>,
}

impl Launch {
    /// The launch the arguments ask for: `None` without a response
    /// address (an ordinary, connection-file start).
    pub fn from_args(args: &GatewayArgs) -> Result<Option<Launch>, GatewayError> {
        let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
        let Some(address) = args.response_address.as_deref().filter(|a| !a.is_empty()) else {
            // Half a launch would serve on loopback, where no gateway looks.
            if given(&args.public_key) {
                return Err(GatewayError::NoResponseAddress("--public-key (PUBLIC_KEY)"));
            }
            if given(&args.port_range) {
                return Err(GatewayError::NoResponseAddress("--port-range (PORT_RANGE)"));
            }
            return Ok(None);
        };
        let kernel_id = match args.kernel_id.as_deref() {
            None | Some("") => {
                return Err(GatewayError::Missing {
                    missing: "--kernel-id",
                    placeholder: "{kernel_id}",
                })
            }
            Some(id) if !is_kernel_id(id) => return Err(GatewayError::KernelId(id.to_owned())),
            Some(id) => id.to_owned(),
        };
        let key = match args.public_key.as_deref() {
            None | Some("") => {
                return Err(GatewayError::Missing {
                    missing: "--public-key",
                    placeholder: "{public_key}",
                })
            }
            Some(key) => GatewayKey::parse(key)?,
        };
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .filter(|(host, port)| !host.is_empty() && *port != 0)
            .ok_or_else(|| GatewayError::ResponseAddress(address.to_owned()))?;
        let ports = match args.port_range.as_deref() {
            Some(range) if !range.trim().is_empty() => PortRange::parse(range)?,
            _ => PortRange::any(),
        };
        Ok(Some(Launch {
            kernel_id,
            response_host: host.trim_matches(['[', ']']).to_owned(),
            response_port: port,
            key,
            ports,
            orphan_timeout: (args.gateway_orphan_timeout > 0)
                .then(|| Duration::from_secs(args.gateway_orphan_timeout)),
        }))
    }

    /// The address connection info goes to, as given.
    pub fn response_address(&self) -> String {
        format!("{}:{}", self.response_host, self.response_port)
    }

    /// Binds the kernel's channels on `info.ip` at distinct ports inside
    /// the range. A port taken between choosing and binding (someone else
    /// was quicker) costs a fresh choice, a few times.
    pub async fn bind(&self, info: &mut ConnectionInfo) -> Result<KernelSockets, GatewayError> {
        let mut last = None;
        for _ in 0..BIND_ATTEMPTS {
            let ports = self.ports.pick(&info.ip, 5)?;
            info.shell_port = ports[0];
            info.iopub_port = ports[1];
            info.stdin_port = ports[2];
            info.control_port = ports[3];
            info.hb_port = ports[4];
            match ZmqTransport.bind(info).await {
                Ok(sockets) => return Ok(sockets),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => GatewayError::Bind(e),
            None => GatewayError::Ports(self.ports.exhausted(&info.ip, String::new())),
        })
    }

    /// Binds the communication port on `ip`, inside the range.
    pub fn listen_comm(&self, ip: &str) -> Result<tokio::net::TcpListener, GatewayError> {
        let listener = self.ports.listen(ip)?;
        listener.set_nonblocking(true).map_err(GatewayError::Comm)?;
        tokio::net::TcpListener::from_std(listener).map_err(GatewayError::Comm)
    }

    /// Sends the connection information to the gateway's response address.
    pub async fn respond(&self, info: &ConnectionInfo, comm_port: u16) -> Result<(), GatewayError> {
        let sealed = self.key.seal(&self.connection_payload(info, comm_port)?)?;
        let fail = |reason: String| GatewayError::Respond {
            address: self.response_address(),
            reason,
        };
        let send = async {
            let mut stream =
                tokio::net::TcpStream::connect((self.response_host.as_str(), self.response_port))
                    .await?;
            stream.write_all(sealed.as_bytes()).await?;
            // The gateway reads until we close our side.
            stream.shutdown().await
        };
        match tokio::time::timeout(RESPONSE_TIMEOUT, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(_) => Err(fail(format!(
                "no connection within {} s",
                RESPONSE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The connection file's fields and what the gateway adds to them.
    fn connection_payload(
        &self,
        info: &ConnectionInfo,
        comm_port: u16,
    ) -> Result<Vec<u8>, GatewayError> {
        let mut value = serde_json::to_value(info).map_err(GatewayError::Encode)?;
        value["pid"] = std::process::id().into();
        value["pgid"] = nix::unistd::getpgrp().as_raw().into();
        value["comm_port"] = comm_port.into();
        value["kernel_id"] = Value::from(self.kernel_id.clone());
        Ok(value.to_string().into_bytes())
    }
}

/// Whether `id` can name files: the kernel id ends up in the connection
/// file's and the session's names. EG's ids are UUIDs.
fn is_kernel_id(id: &str) -> bool {
    id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Makes this process lead its own process group (and session), so the
/// gateway's group signals reach the kernel and its children only. A
/// process that already leads one is left as it is.
pub fn lead_own_process_group() {
    if nix::unistd::getpgrp() == nix::unistd::getpid() {
        return;
    }
    if let Err(e) = nix::unistd::setsid() {
        tracing::warn!(error = %e, "cannot start a session of our own; the gateway's group signals reach our launcher's group too");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(address: Option<&str>) -> GatewayArgs {
        GatewayArgs {
            kernel_id: Some("0b1c2d3e-aaaa-bbbb-cccc-000000000001".into()),
            response_address: address.map(str::to_owned),
            public_key: Some(test_key()),
            port_range: None,
            gateway_orphan_timeout: 0,
        }
    }

    fn test_key() -> String {
        use rsa::pkcs8::EncodePublicKey;
        use rsa::Generate;
        let private = rsa::PrivateKey::generate();
        private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
    }

    #[test]
    fn without_a_response_address_the_start_is_an_ordinary_one() {
        let mut plain = args(None);
        plain.public_key = None;
        assert!(Launch::from_args(&plain).unwrap().is_none());
    }

    #[test]
    fn a_response_address_needs_its_kernel_id_and_key() {
        let launch = Launch::from_args(&args(Some("10.0.0.5:8877")))
            .unwrap()
            .unwrap();
        assert_eq!(launch.response_address(), "10.0.0.5:8877");
        let mut no_key = args(Some("10.0.0.5:8877"));
        no_key.public_key = None;
        let e = Launch::from_args(&no_key).unwrap_err().to_string();
        assert!(
            e.contains("--public-key") && e.contains("{public_key}"),
            "{e}"
        );
        let mut no_id = args(Some("10.0.0.5:8877"));
        no_id.kernel_id = None;
        let e = Launch::from_args(&no_id).unwrap_err().to_string();
        assert!(e.contains("--kernel-id"), "{e}");
    }

    #[test]
    fn half_a_launch_or_an_id_that_is_no_id_is_refused() {
        let mut half = args(None);
        let e = Launch::from_args(&half).unwrap_err().to_string();
        assert!(
            e.contains("--public-key") && e.contains("{response_address}"),
            "{e}"
        );
        half.public_key = None;
        half.port_range = Some("42000..43000".into());
        let e = Launch::from_args(&half).unwrap_err().to_string();
        assert!(e.contains("--port-range"), "{e}");
        // The control: a kernel id alone (EG sets KERNEL_ID for every
        // kernel) is an ordinary start.
        half.port_range = None;
        assert!(Launch::from_args(&half).unwrap().is_none());
        for bad in ["../x", "a/b", ".hidden", &"x".repeat(129)] {
            let mut launch = args(Some("10.0.0.5:8877"));
            launch.kernel_id = Some(bad.to_owned());
            let e = Launch::from_args(&launch).unwrap_err();
            assert!(matches!(e, GatewayError::KernelId(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn a_response_address_without_a_port_is_refused() {
        for bad in ["10.0.0.5", "10.0.0.5:", ":8877", "10.0.0.5:0", "host:port"] {
            let e = Launch::from_args(&args(Some(bad))).unwrap_err();
            assert!(matches!(e, GatewayError::ResponseAddress(_)), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn a_response_address_that_refuses_is_an_error_naming_it() {
        // A port that was free a moment ago: nobody listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let launch = Launch::from_args(&args(Some(&address))).unwrap().unwrap();
        let info = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
        let e = launch.respond(&info, 1).await.unwrap_err().to_string();
        assert!(e.contains(&address) && e.contains("gateway is gone"), "{e}");
        // The control: a listener at the address receives the payload.
        let listener = tokio::net::TcpListener::bind(&address).await.unwrap();
        let read = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).await.unwrap();
            text
        });
        launch.respond(&info, 1).await.unwrap();
        let payload = read.await.unwrap();
        assert!(!payload.is_empty());
    }
}
