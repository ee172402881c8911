//! `skillkernel start`: one kernel in the foreground.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use std::sync::Arc;

use skillkernel_kernel::{Kernel, KernelConfig, KernelHandle, Models};
use skillkernel_protocol::{ConnectionError, ConnectionInfo, WireLimits};
use skillkernel_providers::Registry;
use skillkernel_transport::zmq::ZmqTransport;
use skillkernel_transport::{Transport, TransportError};
use thiserror::Error;

use crate::cli::StartArgs;
use crate::config::{Config, ConfigError};
use crate::logging;
use skillkernel_protocol::paths;

/// Why the kernel could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Log(#[from] logging::LogError),
}

pub fn run(args: StartArgs) -> Result<ExitCode, StartError> {
    let (mut settings, files) = Config::load(args.config.as_deref())?;
    settings.apply(&args);
    // Held to the end: it flushes the log file when dropped.
    let log = logging::init(&settings.log)?;
    tracing::info!(files = ?files, "configuration read");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.io_threads.max(1))
        .thread_name("skillkernel-io")
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let result = runtime.block_on(serve(args, settings));
    // Do not wait on stray blocking work (e.g. a stuck read) at exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    // stderr may be /dev/null (`--daemon`): the log file must say why, too.
    if let (Err(e), Some(_)) = (&result, log.file()) {
        tracing::error!("{e}");
    }
    drop(log);
    result
}

/// The model backends the configuration asks for.
fn models(config: &Config) -> Models {
    let m = &config.models;
    let model_dir = config.model_dir();
    let cache_dir = config.state_dir().join("cache");
    let (registry, notes) = Registry::from_config(m, &model_dir, Some(&cache_dir));
    for note in notes {
        tracing::warn!("{note}");
    }
    tracing::info!(
        model_dir = %model_dir.display(),
        default_model = %m.default,
        backends = ?m.backends,
        cache = registry.cache().is_some(),
        "models"
    );
    Models {
        registry: Arc::new(registry),
        default_model: m.default.clone(),
        options: m.generation.options(),
        system_prompt: Some(m.system_prompt.clone()).filter(|s| !s.trim().is_empty()),
    }
}

/// Where the connection comes from, and whether this process owns the file.
struct Connection {
    info: ConnectionInfo,
    path: PathBuf,
    created: bool,
}

fn connection(args: &StartArgs) -> Result<Connection, StartError> {
    match &args.connection_file {
        Some(path) if path.exists() => Ok(Connection {
            info: ConnectionInfo::read(path)?,
            path: path.clone(),
            created: false,
        }),
        Some(path) => Ok(Connection {
            info: ConnectionInfo::new_random(&args.ip, "skillkernel"),
            path: path.clone(),
            created: true,
        }),
        None => {
            let name = format!("kernel-skillkernel-{}.json", uuid::Uuid::new_v4());
            Ok(Connection {
                info: ConnectionInfo::new_random(&args.ip, "skillkernel"),
                path: paths::jupyter_runtime_dir().join(name),
                created: true,
            })
        }
    }
}

async fn serve(args: StartArgs, settings: Config) -> Result<ExitCode, StartError> {
    let Connection {
        mut info,
        path,
        created,
    } = connection(&args)?;
    let sockets = ZmqTransport.bind(&mut info).await?;
    if created {
        info.write(&path)?;
        announce(&path);
    }
    let config = KernelConfig {
        command_timeout: Duration::from_secs(settings.limits.command_timeout_secs),
        limits: WireLimits {
            max_message_bytes: settings.limits.max_message_bytes,
            ..WireLimits::default()
        },
        models: Some(models(&settings)),
        ..KernelConfig::default()
    };
    let kernel = Kernel::start(sockets, info.signer(), config);
    tracing::info!(
        connection_file = %path.display(),
        ip = %info.ip,
        shell = info.shell_port,
        iopub = info.iopub_port,
        pid = std::process::id(),
        "skillkernel serving"
    );
    let signals = Signals::new([SIGINT, SIGTERM]).map_err(StartError::Signals)?;
    let signal_handle = signals.handle();
    let signal_task = tokio::spawn(forward_signals(signals, kernel.handle.clone()));
    let parent_watch =
        parent_pid_to_watch().map(|pid| tokio::spawn(watch_parent(pid, kernel.handle.clone())));
    let reason = kernel.wait().await;
    tracing::info!(?reason, "skillkernel stopping");
    signal_handle.close();
    signal_task.abort();
    if let Some(task) = parent_watch {
        task.abort();
    }
    if created {
        remove_connection_file(&path);
    }
    Ok(ExitCode::SUCCESS)
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

/// The launcher's PID when it asked us to die with it: Jupyter sets
/// `JPY_PARENT_PID` for the kernels it starts.
fn parent_pid_to_watch() -> Option<u32> {
    std::env::var("JPY_PARENT_PID").ok()?.trim().parse().ok()
}

/// Shuts the kernel down when the launching process is gone (we were
/// re-parented), as ipykernel does, so a crashed front end leaves no
/// orphan kernel behind.
async fn watch_parent(parent: u32, kernel: KernelHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if std::os::unix::process::parent_id() != parent {
            tracing::warn!(parent, "parent process exited; shutting down");
            kernel.shutdown(false);
            return;
        }
    }
}

/// Signals become kernel requests; no work happens in the handler itself.
async fn forward_signals(mut signals: Signals, kernel: KernelHandle) {
    while let Some(signal) = signals.next().await {
        match signal {
            SIGINT => {
                tracing::info!("SIGINT: interrupting the running cell");
                kernel.interrupt();
            }
            SIGTERM => {
                tracing::info!("SIGTERM: shutting down");
                kernel.shutdown(false);
            }
            _ => {}
        }
    }
}

fn remove_connection_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove connection file");
    }
}
