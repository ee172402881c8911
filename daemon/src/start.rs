//! `skillkernel start`: one kernel in the foreground.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use signal_hook_tokio::Signals;
use std::sync::Arc;

use skillkernel_kernel::{
    Kernel, KernelConfig, KernelHandle, Models, PersistConfig, ShutdownOrigin,
};
use skillkernel_protocol::WireLimits;
use skillkernel_providers::{usage::Ledger, Registry};
use skillkernel_sandbox::SandboxSetup;
use skillkernel_skills::service::SkillsSetup;
use thiserror::Error;

use crate::cli::StartArgs;
use crate::config::{Config, ConfigError};
use crate::connection::{self, OpenError, Opened};
use crate::daemonize::{self, DaemonizeError, Readiness};
use crate::gateway::{self, GatewayError, Launch};
use crate::logging;
use crate::pidfile::{PidFile, PidFileError};
use crate::reload::{self, Reloader};
use crate::signals;
use crate::traces;
use skillkernel_protocol::paths;

/// Why the kernel could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error(transparent)]
    Daemonize(#[from] DaemonizeError),
    #[error("cannot create the log directory {path}: {source}")]
    LogDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot resolve a relative path (current directory unreadable): {0}")]
    Cwd(std::io::Error),
    #[error(transparent)]
    Log(#[from] logging::LogError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

pub fn run(args: StartArgs) -> Result<ExitCode, StartError> {
    // Paths are made absolute before `--daemon` changes to `/`, and so a
    // reload reads the same files.
    let args = absolute_paths(args)?;
    // A gateway launch that cannot work fails before anything starts.
    let launch = Launch::from_args(&args.gateway)?;
    if launch.is_some() && !args.daemon {
        gateway::lead_own_process_group();
    }
    // Project skills (`.skillkernel/skills`) and conversation skills'
    // context files are found from where the kernel was started.
    let working_dir = std::env::current_dir().map_err(StartError::Cwd)?;
    let (mut settings, files) = Config::load(args.config.as_deref())?;
    args.apply_to(&mut settings);
    absolute_config_paths(&mut settings)?;
    let pid_path = settings.daemon.pid_file.clone().or_else(|| {
        args.daemon
            .then(|| settings.state_dir().join("skillkernel.pid"))
    });
    // Locked before detaching, so a second daemon is refused by the
    // launcher itself, with the reason on its stderr.
    let mut pid_file = pid_path.as_deref().map(PidFile::acquire).transpose()?;
    let mut readiness = if args.daemon {
        let output = match &settings.log.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| StartError::LogDir {
                    path: dir.clone(),
                    source,
                })?;
                Some(dir.join("skillkernel.stderr.log"))
            }
            None => None,
        };
        daemonize::detach(output.as_deref())?
    } else {
        Readiness::none()
    };
    let result = run_detached(
        args,
        launch,
        settings,
        files,
        working_dir,
        &mut pid_file,
        &mut readiness,
    );
    if let Err(e) = &result {
        readiness.failed(&e.to_string());
    }
    result
}

/// Everything after the (optional) fork: logging, the runtime, the kernel.
#[allow(clippy::too_many_arguments)]
fn run_detached(
    args: StartArgs,
    launch: Option<Launch>,
    settings: Config,
    files: Vec<PathBuf>,
    working_dir: PathBuf,
    pid_file: &mut Option<PidFile>,
    readiness: &mut Readiness,
) -> Result<ExitCode, StartError> {
    if let Some(pid_file) = pid_file.as_mut() {
        pid_file.write_pid(std::process::id())?;
    }
    // Trace export needs its layer in the subscriber logging installs.
    let (traces, trace_layer, trace_error) = match traces::start(&settings.tracing) {
        Ok(Some((traces, layer))) => (Some(traces), Some(layer), None),
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e)),
    };
    // Held to the end: it flushes the log file when dropped.
    let log = Arc::new(logging::init(
        &settings.log,
        trace_layer,
        Some(settings.state_dir()),
    )?);
    tracing::info!(files = ?files, "configuration read");
    if let Some(e) = trace_error {
        tracing::error!("{e}; the kernel runs without traces");
    }
    if let Some(traces) = &traces {
        tracing::info!(collector = %traces.outlet().target(), "exporting traces over OTLP/HTTP");
    }
    // Sandbox pids groups a crashed daemon left behind (root daemons only
    // make them; elsewhere this finds nothing).
    skillkernel_sandbox::cgroup::sweep_stale_run_cgroups();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.io_threads.max(1))
        .thread_name("skillkernel-io")
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let started = Started {
        args,
        launch,
        settings,
        files,
        working_dir,
        pid_file: pid_file.take(),
        telemetry: traces
            .iter()
            .map(traces::Traces::outlet)
            .chain(log.outlet())
            .collect(),
        log: log.clone(),
    };
    let result = runtime.block_on(serve(started, readiness));
    // Do not wait on stray blocking work (e.g. a stuck read) at exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    // stderr may be /dev/null (`--daemon`): the log file must say why, too.
    if let (Err(e), Some(_)) = (&result, log.file()) {
        tracing::error!("{e}");
    }
    if let Some(traces) = traces {
        traces.shutdown();
    }
    drop(log);
    result
}

/// Makes the path options absolute against the current directory.
fn absolute_paths(mut args: StartArgs) -> Result<StartArgs, StartError> {
    for path in [
        &mut args.connection_file,
        &mut args.config,
        &mut args.state_dir,
        &mut args.model_dir,
        &mut args.pid_file,
        &mut args.log_dir,
    ]
    .into_iter()
    .flatten()
    {
        *path = std::path::absolute(&*path).map_err(StartError::Cwd)?;
    }
    Ok(args)
}

/// Makes paths from the config files absolute too (relative ones are taken
/// against the directory the daemon was started in).
fn absolute_config_paths(settings: &mut Config) -> Result<(), StartError> {
    for path in [
        &mut settings.daemon.state_dir,
        &mut settings.daemon.pid_file,
        &mut settings.log.dir,
        &mut settings.models.dir,
        &mut settings.skills.user_dir,
    ]
    .into_iter()
    .flatten()
    .chain(settings.skills.dirs.iter_mut())
    {
        *path = std::path::absolute(&*path).map_err(StartError::Cwd)?;
    }
    Ok(())
}

/// Where the kernel's skills come from; the index lives in the state dir.
pub fn skills_setup(config: &Config, working_dir: &Path) -> SkillsSetup {
    SkillsSetup {
        config: config.skills.clone(),
        working_dir: working_dir.to_path_buf(),
        index_path: Some(config.state_dir().join("skills-index")),
        trust_store: Some(config.state_dir().join("skill-trust.json")),
    }
}

/// The sandbox: this very binary is the helper (`skillkernel sandbox-exec`),
/// run through `/proc/self/exe` so that an upgrade that replaces the file
/// on disk still runs the helper matching this daemon.
/// No program may read the kernel's own files: its connection file (and
/// Jupyter's folder of them), its config files and its logs.
fn sandbox_setup(
    config: &Config,
    working_dir: &Path,
    connection_file: &Path,
    config_files: &[PathBuf],
) -> SandboxSetup {
    let kernel_files = std::iter::once(connection_file.to_path_buf())
        .chain(config_files.iter().cloned())
        .chain(config.log.dir.clone())
        .collect();
    SandboxSetup {
        helper: PathBuf::from("/proc/self/exe"),
        state_dir: Some(config.state_dir()),
        working_dir: working_dir.to_path_buf(),
        kernel_files,
        connection_folders: vec![paths::jupyter_runtime_dir()],
        config: config.sandbox.clone(),
    }
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
    let usage_dir = config.state_dir().join("usage");
    let registry = match Ledger::open(&usage_dir) {
        Ok(ledger) => registry.with_usage(Arc::new(ledger)),
        Err(e) => {
            tracing::warn!(dir = %usage_dir.display(), error = %e, "usage ledger off: model calls are not recorded and budgets are not checked");
            registry
        }
    };
    tracing::info!(
        model_dir = %model_dir.display(),
        default_model = %m.default,
        backends = ?m.backends,
        cache = registry.cache().is_some(),
        "models"
    );
    reload::models_from(config, registry)
}

/// The persisted session this kernel continues, unless `[state] persist`
/// is off: `[daemon] session` (`--session`, `SKILLKERNEL_SESSION`), else
/// `fallback` (see [`session_hint`]) — Jupyter names connection files
/// `kernel-<uuid>.json`, so each notebook kernel has its own session and a
/// restarted one (same file) finds it — else `default`.
fn persistence(config: &Config, fallback: Option<String>) -> Option<PersistConfig> {
    if !config.state.persist {
        return None;
    }
    let session = config
        .daemon
        .session
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or(fallback)
        .unwrap_or_else(|| "default".into());
    Some(PersistConfig {
        state_dir: config.state_dir(),
        session,
        artifact_threshold_bytes: config.state.artifact_threshold_bytes,
        compress_threshold_bytes: config.state.compress_threshold_bytes,
    })
}

/// What `serve` starts from.
struct Started {
    args: StartArgs,
    /// An Enterprise Gateway launch, in place of a connection file.
    launch: Option<Launch>,
    settings: Config,
    files: Vec<PathBuf>,
    working_dir: PathBuf,
    pid_file: Option<PidFile>,
    /// Telemetry outlets for the kernel's status (trace export, log file).
    telemetry: Vec<Arc<skillkernel_stdx::outlet::Outlet>>,
    log: Arc<logging::LogHandle>,
}

async fn serve(started: Started, readiness: &mut Readiness) -> Result<ExitCode, StartError> {
    let Started {
        args,
        launch,
        settings,
        files,
        working_dir,
        pid_file,
        telemetry,
        log,
    } = started;
    // Before anyone learns where we are: a signal that arrives early (a
    // gateway's interrupt or SIGTERM right after our response) waits for
    // its handler instead of killing the process.
    let signals = Signals::new(signals::HANDLED).map_err(StartError::Signals)?;
    let Opened {
        info,
        path,
        created,
        sockets,
        comm,
    } = connection::open(&args, launch.as_ref()).await?;
    let config = KernelConfig {
        command_timeout: Duration::from_secs(settings.limits.command_timeout_secs),
        limits: WireLimits {
            max_message_bytes: settings.limits.max_message_bytes,
            ..WireLimits::default()
        },
        models: Some(models(&settings)),
        shutdown: reload::shutdown_settings(&settings),
        persistence: persistence(&settings, connection::session_hint(&args, launch.as_ref())),
        health: settings.health.clone(),
        skills: Some(skills_setup(&settings, &working_dir)),
        sandbox: Some(sandbox_setup(&settings, &working_dir, &path, &files)),
        telemetry,
        mcp: settings.mcp.server.settings(),
        mcp_servers: settings.mcp.servers.clone(),
        ..KernelConfig::default()
    };
    let kernel = Kernel::start(sockets, info.signer(), config);
    if created {
        let path = path.clone();
        kernel.handle.on_cleanup("connection file", move || {
            connection::remove_connection_file(&path)
        });
    }
    if let Some(pid_file) = pid_file {
        kernel
            .handle
            .on_cleanup("PID file", move || pid_file.remove());
    }
    let signal_handle = signals.handle();
    let metrics = settings.metrics.clone();
    let mcp = settings.mcp.server.clone();
    let state_dir = settings.state_dir();
    reload::apply_audit_rotation(&kernel.handle, &settings.log);
    let reloader = Reloader::new(args, settings, files, kernel.handle.clone(), log);
    let ops = signals::Operator::new(kernel.handle.clone(), reloader, &info, &path);
    let signal_task = tokio::spawn(signals::serve(signals, ops));
    let metrics_task = metrics_endpoint(&metrics, &kernel.handle).await;
    let mcp_stop = tokio_util::sync::CancellationToken::new();
    let mcp_task =
        crate::mcp_endpoint::start(&mcp, &state_dir, &kernel.handle, mcp_stop.clone()).await;
    // A gateway kernel's owner is the gateway, heard on the communication
    // port; the process that started it (an SSH shell, a container
    // runtime) may be long gone.
    let comm_task = comm.zip(launch.as_ref()).map(|(listener, launch)| {
        tokio::spawn(gateway::comm::serve(
            listener,
            kernel.handle.clone(),
            launch.orphan_timeout,
        ))
    });
    let parent_watch = parent_pid_to_watch()
        .filter(|_| launch.is_none())
        .map(|pid| tokio::spawn(watch_parent(pid, kernel.handle.clone())));
    tracing::info!(
        connection_file = %path.display(),
        ip = %info.ip,
        shell = info.shell_port,
        iopub = info.iopub_port,
        stdin = info.stdin_port,
        control = info.control_port,
        hb = info.hb_port,
        pid = std::process::id(),
        "skillkernel serving"
    );
    readiness.ready(&path);
    let report = kernel.wait().await;
    signal_handle.close();
    signal_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    mcp_stop.cancel();
    if let Some(task) = mcp_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    if let Some(task) = parent_watch {
        task.abort();
    }
    // The communication port ends on its own only when the gateway is lost.
    let gateway_lost = comm_task.is_some_and(|task| {
        let finished = task.is_finished();
        task.abort();
        finished
    });
    tracing::info!(
        total_ms = report.total().as_secs_f64() * 1000.0,
        forced = report.forced,
        "skillkernel stopped"
    );
    // Non-zero, so whatever runs the kernel (a container, a supervisor)
    // sees the loss of its gateway as a failure.
    Ok(if gateway_lost {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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
            kernel.shutdown(ShutdownOrigin::ParentExited);
            return;
        }
    }
}

/// Starts the Prometheus endpoint when `[metrics] listen` is set. A port
/// that cannot be bound is logged and the kernel serves without it.
async fn metrics_endpoint(
    config: &crate::config::MetricsConfig,
    kernel: &skillkernel_kernel::KernelHandle,
) -> Option<tokio::task::JoinHandle<()>> {
    let listen = config.listen.as_deref()?;
    match crate::metrics_http::MetricsServer::bind(listen, config.bearer_token.as_deref()).await {
        Ok(server) => {
            let addr = server
                .local_addr()
                .map_or_else(|_| listen.to_owned(), |a| a.to_string());
            tracing::info!(
                address = %addr,
                token = config.bearer_token.is_some(),
                "metrics endpoint listening on http://{addr}/metrics"
            );
            Some(tokio::spawn(server.serve(kernel.clone())))
        }
        Err(e) => {
            tracing::error!(listen, error = %e, "cannot serve metrics; the kernel runs without them");
            None
        }
    }
}
