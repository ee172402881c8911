//! Where the kernel's connection comes from, set up before the kernel
//! serves: a connection file Jupyter wrote (read), one to create (random
//! ports and key, written 0600 and announced), or an Enterprise Gateway
//! launch (ports inside the gateway's range, a communication port, and
//! the connection sent to the gateway's response address; the local file
//! is then only a convenience).

use std::path::{Path, PathBuf};

use skillkernel_protocol::{paths, ConnectionError, ConnectionInfo};
use skillkernel_transport::zmq::ZmqTransport;
use skillkernel_transport::{KernelSockets, Transport, TransportError};
use thiserror::Error;
use tokio::net::TcpListener;

use crate::cli::StartArgs;
use crate::gateway::{GatewayError, Launch};

/// Why the kernel's connection could not be set up.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// The kernel's sockets, bound, and what a client needs to reach them.
pub struct Opened {
    pub info: ConnectionInfo,
    pub path: PathBuf,
    /// Whether this process wrote the file (and removes it at exit).
    pub created: bool,
    pub sockets: KernelSockets,
    /// A gateway launch's communication port, listening.
    pub comm: Option<TcpListener>,
}

/// Binds the kernel's channels, writes the connection file it owns, and,
/// in a gateway launch, answers the gateway. A launch that cannot answer
/// fails here, before anything serves.
pub async fn open(args: &StartArgs, launch: Option<&Launch>) -> Result<Opened, OpenError> {
    let Connection {
        mut info,
        path,
        created,
    } = connection(args, launch)?;
    let (sockets, comm) = match launch {
        Some(launch) => {
            let sockets = launch.bind(&mut info).await?;
            (sockets, Some(launch.listen_comm(&info.ip)?))
        }
        None => (ZmqTransport.bind(&mut info).await?, None),
    };
    // A gateway kernel's file is a convenience: a container user without a
    // home (any uid a gateway picks) must still serve the gateway.
    let created = created
        && match info.write(&path) {
            Ok(()) => {
                announce(&path);
                true
            }
            Err(e) if launch.is_some() => {
                tracing::warn!("{e}; serving without a local connection file");
                false
            }
            Err(e) => return Err(e.into()),
        };
    if let (Some(launch), Some(comm)) = (launch, &comm) {
        let respond = async {
            let comm_port = comm.local_addr().map_err(GatewayError::Comm)?.port();
            launch.respond(&info, comm_port).await?;
            Ok::<u16, GatewayError>(comm_port)
        };
        match respond.await {
            Ok(comm_port) => tracing::info!(
                kernel_id = %launch.kernel_id,
                response_address = %launch.response_address(),
                comm_port,
                "connection information sent to Enterprise Gateway"
            ),
            Err(e) => {
                if created {
                    remove_connection_file(&path);
                }
                return Err(e.into());
            }
        }
    }
    Ok(Opened {
        info,
        path,
        created,
        sockets,
        comm,
    })
}

/// The session a kernel continues when none is configured: in a gateway
/// launch `kernel-<kernel id>` (a gateway restart keeps the id), else the
/// connection file's stem.
pub fn session_hint(args: &StartArgs, launch: Option<&Launch>) -> Option<String> {
    match launch {
        Some(launch) => Some(format!("kernel-{}", launch.kernel_id)),
        None => args
            .connection_file
            .as_deref()
            .and_then(Path::file_stem)
            .map(|stem| stem.to_string_lossy().into_owned()),
    }
}

/// Where the connection comes from, and whether this process owns the file.
struct Connection {
    info: ConnectionInfo,
    path: PathBuf,
    created: bool,
}

fn connection(args: &StartArgs, launch: Option<&Launch>) -> Result<Connection, OpenError> {
    if let Some(launch) = launch {
        // The gateway gets the connection over its response address; the
        // file is for local tools (`skillctl --existing`). Not
        // `kernel-<id>.json`: a gateway on this host writes and removes
        // that one itself.
        let name = format!("kernel-skillkernel-gateway-{}.json", launch.kernel_id);
        return Ok(Connection {
            info: ConnectionInfo::new_random(
                args.ip.as_deref().unwrap_or("0.0.0.0"),
                "skillkernel",
            ),
            path: args
                .connection_file
                .clone()
                .unwrap_or_else(|| paths::jupyter_runtime_dir().join(name)),
            created: true,
        });
    }
    let ip = args.ip.as_deref().unwrap_or("127.0.0.1");
    match &args.connection_file {
        Some(path) if path.exists() => Ok(Connection {
            info: ConnectionInfo::read(path)?,
            path: path.clone(),
            created: false,
        }),
        Some(path) => Ok(Connection {
            info: ConnectionInfo::new_random(ip, "skillkernel"),
            path: path.clone(),
            created: true,
        }),
        None => {
            let name = format!("kernel-skillkernel-{}.json", uuid::Uuid::new_v4());
            Ok(Connection {
                info: ConnectionInfo::new_random(ip, "skillkernel"),
                path: paths::jupyter_runtime_dir().join(name),
                created: true,
            })
        }
    }
}

/// Prints where the connection file is. Whoever started us may have closed
/// stdout already (a launcher that read the first line); that is not an
/// error worth dying for, so write failures are ignored.
fn announce(path: &Path) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Connection file: {}", path.display());
    let _ = writeln!(
        out,
        "Connect with:    skillctl --existing {}",
        path.display()
    );
    let _ = out.flush();
}

pub fn remove_connection_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove connection file");
    }
}
