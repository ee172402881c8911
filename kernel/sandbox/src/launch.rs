//! Starting a program under the `skillkernel sandbox-exec` helper: the
//! parent's half of the helper's protocol (see [`super::report`]).
//!
//! The helper is spawned as the leader of a new process group (so the
//! program and everything it starts can be killed with one `killpg`), with
//! two extra pipes: the policy goes in over `--policy-fd` (it may hold the
//! skill's environment, which must stay off argv and disk) and the status
//! line comes back over `--status-fd`, read to EOF.
//!
//! Must never apply a layer itself, nor leave a pipe end open in the
//! daemon once the child has it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, RwLock};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use super::audit::Subject;
use super::proxy::{proxy_env, ProxyHost, RunProxy};
use super::{SandboxPolicy, SetupFailure, SetupReport, StatusLine};

/// Why a sandboxed program could not even be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create a pipe for the sandbox helper: {0}")]
    Pipe(std::io::Error),
    #[error("cannot start the sandbox helper {}: {source}; is the `skillkernel` binary still installed there?", helper.display())]
    Spawn {
        helper: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot pass the policy to the sandbox helper: {0}")]
    Policy(std::io::Error),
    #[error("cannot start the network proxy for this run: {0}")]
    Proxy(std::io::Error),
}

/// The `skillkernel` binary, which runs the helper as `sandbox-exec`.
#[derive(Debug, Clone)]
pub struct Helper {
    path: PathBuf,
    /// Variables taken out of the helper's own environment, so no policy
    /// can pass them on: the daemon's secrets (model API keys). Shared by
    /// clones; it only grows.
    withheld: Arc<RwLock<BTreeSet<String>>>,
    /// Where programs granted network by host get their proxy.
    proxies: Option<ProxyHost>,
}

/// Whether the program gets a stdin pipe (sessions) or `/dev/null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    Null,
    Piped,
}

/// A helper just spawned: the child (stdout/stderr piped), its process
/// group, and the status pipe still to read.
pub struct Spawned {
    pub child: Child,
    /// The process group of the helper, and so of the program and its
    /// descendants (the helper's pid).
    pub pgid: i32,
    status: pipe::Receiver,
    /// The run's proxy (network by host), served while this is kept.
    pub proxy: Option<RunProxy>,
}

/// What the helper said before the program started (or did not).
#[derive(Debug, Clone)]
pub enum Setup {
    /// Every layer is in place; the program runs.
    Applied(Box<SetupReport>),
    /// Nothing of the program ran.
    Failed(SetupFailure),
    /// The helper died without a word (killed, crashed).
    Silent,
}

impl Helper {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Helper {
            path: path.into(),
            withheld: Arc::default(),
            proxies: None,
        }
    }

    /// Serves network by host through proxies of `host`'s (without it, a
    /// policy naming hosts is refused).
    pub fn with_proxies(mut self, host: ProxyHost) -> Self {
        self.proxies = Some(host);
        self
    }

    /// Never lets `names` reach a program, whatever a policy's allow-list
    /// says.
    pub fn withhold_env(&self, names: impl IntoIterator<Item = String>) {
        let mut withheld = self.withheld.write().unwrap_or_else(|e| e.into_inner());
        withheld.extend(names);
    }

    /// The variables withheld from every program.
    pub fn withheld_env(&self) -> Vec<String> {
        let withheld = self.withheld.read().unwrap_or_else(|e| e.into_inner());
        withheld.iter().cloned().collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts `argv` under `policy` for `subject`; a policy granting
    /// network by host gets a proxy of its own (in [`Spawned::proxy`]).
    pub async fn spawn(
        &self,
        policy: &SandboxPolicy,
        argv: &[String],
        stdin: Stdin,
        subject: &Subject,
    ) -> Result<Spawned, LaunchError> {
        let mut proxy = None;
        let by_host;
        let policy = if policy.network || policy.network_hosts.is_empty() {
            policy
        } else {
            let host = self.proxies.as_ref().ok_or_else(|| {
                LaunchError::Proxy(std::io::Error::other("this sandbox serves no proxies"))
            })?;
            let started = host
                .start(policy.network_hosts.clone(), subject.clone())
                .map_err(LaunchError::Proxy)?;
            let mut with_proxy = policy.clone();
            with_proxy.proxy_socket = Some(started.socket().to_path_buf());
            with_proxy.env.extend(proxy_env());
            by_host = with_proxy;
            proxy = Some(started);
            &by_host
        };
        let (policy_read, policy_write) = cloexec_pipe()?;
        let (status_read, status_write) = cloexec_pipe()?;
        let inherited = [policy_read.as_raw_fd(), status_write.as_raw_fd()];
        let mut command = Command::new(&self.path);
        command
            .arg("sandbox-exec")
            .arg("--policy-fd")
            .arg(inherited[0].to_string())
            .arg("--status-fd")
            .arg(inherited[1].to_string())
            .arg("--")
            .args(argv.iter().map(OsString::from))
            .stdin(match stdin {
                Stdin::Null => Stdio::null(),
                Stdin::Piped => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for name in self.withheld_env() {
            command.env_remove(name);
        }
        // SAFETY: the closure only calls fcntl (async-signal-safe) on two
        // descriptors that stay open in the parent until spawn returns.
        unsafe {
            command.pre_exec(move || {
                for fd in inherited {
                    clear_cloexec(fd)?;
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| LaunchError::Spawn {
            helper: self.path.clone(),
            source,
        })?;
        // The child has its copies; ours would keep the pipes from ending.
        drop(policy_read);
        drop(status_write);
        let pgid = child.id().map(|id| id as i32).unwrap_or_default();
        if let Some(proxy) = &proxy {
            proxy.set_owner(pgid);
        }
        let json = serde_json::to_vec(policy)
            .map_err(|e| LaunchError::Policy(std::io::Error::other(e)))?;
        let mut sender = pipe::Sender::from_owned_fd(policy_write).map_err(LaunchError::Policy)?;
        // A helper that died early closes its end: the write fails with
        // EPIPE, and the status pipe tells why.
        if let Err(e) = sender.write_all(&json).await {
            tracing::debug!(error = %e, "the sandbox helper did not take its policy");
        }
        drop(sender);
        let status = pipe::Receiver::from_owned_fd(status_read).map_err(LaunchError::Pipe)?;
        Ok(Spawned {
            child,
            pgid,
            status,
            proxy,
        })
    }
}

impl Spawned {
    /// Reads the status pipe to EOF: when it closes, the helper has either
    /// executed the program (the pipe is close-on-exec) or exited.
    pub async fn setup(&mut self) -> Setup {
        let mut text = String::new();
        if let Err(e) = self.status.read_to_string(&mut text).await {
            tracing::warn!(error = %e, "cannot read the sandbox helper's status");
        }
        let mut setup = Setup::Silent;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<StatusLine>(line) {
                Ok(StatusLine::Applied(report)) => setup = Setup::Applied(Box::new(report)),
                Ok(StatusLine::Failed(failure)) => return Setup::Failed(failure),
                Err(e) => tracing::warn!(error = %e, line, "unreadable sandbox status line"),
            }
        }
        setup
    }
}

fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| LaunchError::Pipe(e.into()))
}

fn clear_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: `fd` is open in the forked child (inherited from the parent).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
        .map(drop)
        .map_err(std::io::Error::from)
}
