//! `skillkernel sandbox-exec`: the sandbox helper. The daemon re-executes
//! itself as this small single-threaded process, which confines itself
//! layer by layer and then `execve`s the program, so every layer is
//! inherited by the program and everything it starts.
//!
//! It must never run inside the daemon's own (multi-threaded, tokio)
//! process: rlimits would limit the daemon, and Landlock and seccomp apply
//! to the calling thread only. It must never start a thread either.
//!
//! # Order of the layers (and why)
//!
//! 0. **Prepare** everything that allocates or opens files (policy, argv,
//!    scrubbed environment, program lookup) while nothing limits the helper.
//! 1. **Process group** (`setsid`, or already a group leader): first, so the
//!    parent can kill the whole tree by the helper's pid whatever follows.
//! 2. **pids cgroup** (root only: `RLIMIT_NPROC` does not limit root): the
//!    helper joins `<pids root>/skillkernel/run-<pid>` with `pids.max` set,
//!    so the program and everything it starts count from the start. Before
//!    Landlock, which would deny the cgroupfs writes. Best effort: reported,
//!    never a set-up failure (see `pids_cgroup.rs`).
//! 3. **Workspace** (`chdir`): before Landlock, so a missing workspace is
//!    reported as such rather than as a denied path.
//!    Then the **namespaces** (`namespaces.rs`), when needed: a mount
//!    namespace to hide denied paths inside grants in (`hidden.rs`),
//!    before Landlock forbids mounting; a network namespace with only `lo`
//!    for network by host, where the forked bridge (`bridge.rs`) leads to
//!    the proxy (forked before any layer: it runs only our code).
//! 4. **`PR_SET_NO_NEW_PRIVS`**: Landlock and unprivileged seccomp require
//!    it, and it keeps set-uid programs from escaping the rules.
//! 5. **Landlock**: filesystem (and TCP, ABI ≥ 4) rules.
//! 6. **seccomp**: the socket filter. After Landlock, so no filter can ever
//!    stand in the way of installing the Landlock ruleset.
//! 7. **rlimits** last before exec: they constrain the helper too (address
//!    space for its allocations, open files for Landlock's path descriptors,
//!    CPU for its set-up), and only the program needs them.
//! 8. **Status line, close-on-exec for every descriptor above 2, `execve`**
//!    with the scrubbed environment (the helper never edits its own).
//!
//! The parent removes the run's pids group after the run
//! ([`crate::cgroup::remove_run_cgroup`]): the helper
//! cannot, it has become the program.

mod bridge;
mod environment;
mod exec;
mod hidden;
mod landlock_rules;
mod namespaces;
mod pids_cgroup;
mod probe;
mod rlimits;
mod seccomp_filter;
mod status;

use std::convert::Infallible;
use std::process::ExitCode;

use crate::{SandboxPolicy, SetupFailure, SetupReport, SetupStage, StatusLine, EXIT_SETUP_FAILED};

use status::StatusSink;

/// `skillkernel sandbox-exec [--policy-json J|--policy-file F|--policy-fd N]
/// [--status-fd N] -- PROGRAM ARGS…`, `skillkernel sandbox-exec --probe` or
/// `--readable`.
/// The daemon's command line embeds these arguments as they are.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// Print the host's sandbox support as JSON and exit.
    #[arg(long, conflicts_with_all = ["policy_json", "policy_file", "policy_fd", "status_fd", "program"])]
    pub probe: bool,
    /// Print, as JSON, the paths every program may read: the defaults
    /// (`default_read`) and the home directory's toolchains found through
    /// `PATH` (`toolchains`, see [`crate::toolchains`]); then exit.
    #[arg(long, conflicts_with_all = ["probe", "policy_json", "policy_file", "policy_fd", "status_fd", "program"])]
    pub readable: bool,
    /// The policy as a JSON string (visible in the process list: no secrets).
    #[arg(long, value_name = "JSON", group = "policy")]
    pub policy_json: Option<String>,
    /// A file holding the policy JSON.
    #[arg(long, value_name = "FILE", group = "policy")]
    pub policy_file: Option<std::path::PathBuf>,
    /// An inherited descriptor to read the policy JSON from, to EOF (how
    /// the daemon passes it: the skill's env stays off argv and disk).
    #[arg(long, value_name = "FD", group = "policy")]
    pub policy_fd: Option<i32>,
    /// An inherited descriptor to write status lines to (see
    /// [`crate::report`]).
    #[arg(long, value_name = "FD")]
    pub status_fd: Option<i32>,
    /// The program and its arguments, after `--`.
    #[arg(last = true, value_name = "PROGRAM")]
    pub program: Vec<std::ffi::OsString>,
}

/// Runs `sandbox-exec`: returns only when the program could not be run.
pub fn run(args: ExecArgs) -> ExitCode {
    if args.probe {
        return probe::print();
    }
    if args.readable {
        let home = std::env::var("HOME").unwrap_or_default();
        let path = std::env::var("PATH").unwrap_or_default();
        let (toolchains, warnings) = crate::toolchains::roots(&path, std::path::Path::new(&home));
        let out = serde_json::json!({
            "default_read": crate::DEFAULT_READ_PATHS,
            "toolchains": toolchains,
            "warnings": warnings,
        });
        println!("{out}");
        return ExitCode::SUCCESS;
    }
    let status = StatusSink::new(args.status_fd);
    match confine_and_exec(&args, &status) {
        Ok(never) => match never {},
        Err(failure) => {
            let code = failure.exit_code;
            status.send(&StatusLine::Failed(failure));
            ExitCode::from(code)
        }
    }
}

/// A set-up failure at `stage` (exit [`EXIT_SETUP_FAILED`]).
pub(crate) fn failure(stage: SetupStage, message: impl Into<String>) -> SetupFailure {
    SetupFailure {
        stage,
        message: message.into(),
        exit_code: EXIT_SETUP_FAILED,
    }
}

fn confine_and_exec(args: &ExecArgs, status: &StatusSink) -> Result<Infallible, SetupFailure> {
    let policy = read_policy(args)?;
    let env = environment::scrubbed(&policy, std::env::vars_os());
    let program = exec::Program::prepare(&args.program, &env)?;
    let process_group = exec::enter_own_process_group()?;
    let processes = pids_cgroup::apply(&policy.limits);
    if let Some(workspace) = &policy.workspace {
        std::env::set_current_dir(workspace).map_err(|e| {
            failure(
                SetupStage::Workspace,
                format!("cannot enter workspace {}: {e}", workspace.display()),
            )
        })?;
    }
    let plan = hidden::Plan::new(&policy);
    let by_host = policy.network_by_host();
    let namespace = (plan.needs_mount_namespace() || by_host)
        .then(|| namespaces::enter(plan.needs_mount_namespace(), by_host));
    let network_namespace = match (&namespace, &policy.proxy_socket) {
        (Some(Ok(made)), Some(socket)) if by_host => {
            bridge::start(socket).map_err(|e| failure(SetupStage::Network, e))?;
            Some(made.as_str().to_string())
        }
        // Never a wider network than asked: no namespace, no run.
        (Some(Err(e)), _) if by_host => {
            return Err(failure(
                SetupStage::Network,
                format!("network by host needs a network namespace: {e}"),
            ))
        }
        _ => None,
    };
    let hidden = plan.apply(namespace);
    exec::set_no_new_privs()?;
    let landlock = landlock_rules::restrict(&policy, &hidden.read, &hidden.write)?;
    // By host, internet sockets are allowed: the namespace holds only `lo`.
    let sockets = if policy.network {
        seccomp_filter::Sockets::Any
    } else if by_host {
        seccomp_filter::Sockets::Inet
    } else {
        seccomp_filter::Sockets::UnixOnly
    };
    let seccomp = seccomp_filter::install(sockets)?;
    let rlimits = rlimits::apply(&policy.limits)?;
    status.send(&StatusLine::Applied(SetupReport {
        program: program.display(),
        process_group: process_group.to_string(),
        rlimits,
        processes,
        no_new_privs: true,
        landlock,
        hidden: hidden.outcome,
        network_namespace,
        seccomp: seccomp.to_string(),
        env: environment::names(&env),
    }));
    Err(program.exec())
}

fn read_policy(args: &ExecArgs) -> Result<SandboxPolicy, SetupFailure> {
    let text = if let Some(json) = &args.policy_json {
        json.clone()
    } else if let Some(path) = &args.policy_file {
        std::fs::read_to_string(path).map_err(|e| {
            failure(
                SetupStage::Policy,
                format!("cannot read policy file {}: {e}", path.display()),
            )
        })?
    } else if let Some(fd) = args.policy_fd {
        status::read_fd_to_end(fd).map_err(|e| {
            failure(
                SetupStage::Policy,
                format!("cannot read the policy from descriptor {fd}: {e}"),
            )
        })?
    } else {
        // No policy given: the safe defaults, in the current directory.
        return Ok(SandboxPolicy::default());
    };
    serde_json::from_str(&text).map_err(|e| {
        failure(
            SetupStage::Policy,
            format!("invalid sandbox policy: {e}; see the sandbox policy in docs/security.md"),
        )
    })
}
