//! [`Sandbox`]: what the kernel holds to run programs confined — the
//! helper binary, the settings from the daemon's `[sandbox]` section, the
//! audit log, the host's support (probed once) and the session skills'
//! processes.
//!
//! [`Sandbox::run`] is the one path every `!command` cell and command skill
//! takes: spawn under the helper, drive to the end, judge, audit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map};
use skillkernel_stdx::span::mark_failed;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::audit::{fields_of, AuditLog, Subject, AUDIT_FILE};
use super::deny::{DenyList, KeptShut};
use super::launch::{Helper, LaunchError, Setup, Stdin};
use super::proxy::ProxyHost;
use super::resident::{ResidentError, ResidentProcess};
use super::run::{self, OutputSink, RunBounds};
use super::sessions::{Exchange, SessionError, SessionSpec, Sessions};
use super::verdict::{self, Denial, Verdict};
use super::{HostSupport, SandboxPolicy};
use std::sync::Arc;

mod auditing;
mod config;

pub use config::{SandboxConfig, SandboxSetup};

/// The kernel's sandbox.
pub struct Sandbox {
    setup: SandboxSetup,
    helper: Helper,
    audit: Arc<AuditLog>,
    host: OnceCell<Result<HostSupport, String>>,
    pub sessions: Sessions,
    /// Process groups of programs running now, killed at exit.
    running: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i32>>>,
    /// Runs by how they ended, in [`Verdict::KINDS`]'s order.
    endings: [std::sync::atomic::AtomicU64; 7],
    /// Accesses the sandbox refused, counted in every run.
    denials: std::sync::atomic::AtomicU64,
    /// Install roots of the toolchains on the daemon's `PATH` under the
    /// home directory, readable by every program (see [`super::toolchains`]).
    toolchains: Vec<PathBuf>,
    /// What no program may read, whatever is granted.
    deny: DenyList,
}

impl Sandbox {
    pub fn new(setup: SandboxSetup) -> Self {
        let audit = AuditLog::new(setup.state_dir.as_ref().map(|d| d.join(AUDIT_FILE)));
        let sessions = Sessions::new(
            setup.config.max_sessions,
            Duration::from_secs(setup.config.session_idle_timeout_secs),
            setup.config.max_output_bytes,
        );
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let own: Vec<PathBuf> = setup
            .kernel_files
            .iter()
            .chain(setup.state_dir.as_ref())
            .cloned()
            .collect();
        let c = &setup.config;
        let own: Vec<PathBuf> = own.into_iter().chain([super::proxy::proxy_dir()]).collect();
        let deny = DenyList::new(
            home.as_deref(),
            &own,
            &setup.connection_folders,
            &c.deny,
            &c.trust,
        );
        // A toolchain root at or inside a denied path is not granted.
        let mut toolchains = home_toolchains();
        toolchains.retain(|root| {
            let denied = deny.paths().into_iter().find(|d| root.starts_with(d));
            if let Some(denied) = &denied {
                tracing::warn!(root = %root.display(), denied = %denied.display(), "a toolchain root on the deny list is not granted");
            }
            denied.is_none()
        });
        let audit = Arc::new(audit);
        let proxies = ProxyHost::new(super::proxy::proxy_dir(), Arc::clone(&audit));
        Sandbox {
            deny,
            helper: Helper::new(&setup.helper).with_proxies(proxies),
            setup,
            audit,
            host: OnceCell::new(),
            sessions,
            running: Default::default(),
            endings: Default::default(),
            denials: Default::default(),
            toolchains,
        }
    }

    /// The home directory's toolchains every program may read.
    pub fn toolchains(&self) -> &[PathBuf] {
        &self.toolchains
    }

    /// Runs so far by how they ended (each of [`Verdict::KINDS`]), and the
    /// accesses refused in them.
    pub fn run_counts(&self) -> ([(&'static str, u64); 7], u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut counts = Verdict::KINDS.map(|k| (k, 0));
        for (count, n) in counts.iter_mut().zip(&self.endings) {
            count.1 = n.load(Relaxed);
        }
        (counts, self.denials.load(Relaxed))
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.setup.config
    }

    pub fn helper(&self) -> &Helper {
        &self.helper
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit log, to share with what records skill lifecycle events
    /// (workspace trust) beside the sandbox's own.
    pub fn audit_log(&self) -> Arc<AuditLog> {
        Arc::clone(&self.audit)
    }

    pub fn working_dir(&self) -> &Path {
        &self.setup.working_dir
    }

    /// What no program may read, whatever is granted.
    pub fn deny_list(&self) -> Vec<PathBuf> {
        self.deny.paths()
    }

    /// The policy of `!command` cells: the defaults in the working
    /// directory, widened by `[sandbox]`; refused when that reaches a
    /// denied path.
    pub fn cell_policy(&self) -> Result<SandboxPolicy, KeptShut> {
        let c = &self.setup.config;
        let mut policy = SandboxPolicy::for_workspace(&self.setup.working_dir);
        c.network.apply_to(&mut policy);
        policy.read.extend(c.read.iter().cloned());
        policy.write.extend(c.write.iter().cloned());
        policy.env_allow.extend(c.env.iter().cloned());
        self.enforce_config(&mut policy, None)?;
        Ok(policy)
    }

    /// Keeps `names` out of every program's environment from now on, even
    /// where a policy allows them: the daemon's secrets.
    pub fn withhold_env(&self, names: impl IntoIterator<Item = String>) {
        self.helper.withhold_env(names);
    }

    /// What every policy gets from the daemon: `[sandbox]
    /// require_landlock` and `mount_namespace`, the home directory's
    /// toolchains to read and the deny list; refused when a grant reaches a
    /// denied path that `[sandbox.trust]` does not give `skill`.
    pub fn enforce_config(
        &self,
        policy: &mut SandboxPolicy,
        skill: Option<&str>,
    ) -> Result<(), KeptShut> {
        policy.require_landlock |= self.setup.config.require_landlock;
        policy.mount_namespace = self.setup.config.mount_namespace;
        self.deny.apply(policy, skill)?;
        for root in &self.toolchains {
            if !policy.read.contains(root) {
                policy.read.push(root.clone());
            }
        }
        Ok(())
    }

    /// Runs `argv` under `policy` to its end, with `stdin` (if any) as
    /// its input, streaming output to `sink`, audits what the sandbox did
    /// and says what the ending means.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        subject: &Subject,
        policy: &SandboxPolicy,
        argv: &[String],
        stdin: Option<&str>,
        sink: &mut impl OutputSink,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Verdict, LaunchError> {
        let span = tracing::info_span!(
            "sandbox_run",
            source = subject.source,
            skill = subject.skill.as_deref(),
            program = argv.first().map(String::as_str),
            verdict = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let ran = async {
            self.audit_grants(subject, policy);
            let mode = if stdin.is_some() {
                Stdin::Piped
            } else {
                Stdin::Null
            };
            let mut spawned = self.helper.spawn(policy, argv, mode, subject).await?;
            // Kept to the end of the run: it says which hosts it refused.
            let proxy = spawned.proxy.take();
            if let (Some(text), Some(mut pipe)) = (stdin, spawned.child.stdin.take()) {
                // Written aside: a program that does not read its input must
                // not stall the run (the pipe then just closes).
                let text = text.to_owned();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = pipe.write_all(text.as_bytes()).await;
                });
            }
            let bounds = RunBounds {
                timeout,
                max_output_bytes: self.setup.config.max_output_bytes,
            };
            let tracked = Tracked::new(&self.running, spawned.pgid);
            let finished = run::drive(spawned, sink, bounds, cancel).await;
            drop(tracked);
            let (mut verdict, mut denials) = verdict::judge(&finished, policy);
            let refused_hosts = proxy.as_ref().map(|p| p.denied()).unwrap_or_default();
            drop(proxy);
            for target in refused_hosts {
                denials.push(Denial::Host { target });
            }
            if matches!(verdict, Verdict::Failed { .. }) && !denials.is_empty() {
                verdict = Verdict::Denied(denials.clone());
            }
            // A program whose own install it may not read fails in its
            // own words; name the folder instead.
            let landlocked =
                matches!(&finished.setup, Setup::Applied(r) if r.landlock.status != "not_enforced");
            if let (Verdict::Failed { .. }, Some(argv0), true) =
                (&verdict, program_of(argv), landlocked)
            {
                if let Some(root) = super::toolchains::unreadable_install(&argv0, policy) {
                    let denial = Denial::Path {
                        kept_shut: false,
                        path: Some(root.display().to_string()),
                        line: format!(
                            "{argv0} is installed in {}, which it may not read",
                            root.display()
                        ),
                    };
                    denials = vec![denial.clone()];
                    verdict = Verdict::Denied(vec![denial]);
                }
            }
            let report = match &finished.setup {
                Setup::Applied(report) => Some((**report).clone()),
                _ => None,
            };
            self.audit_run(subject, argv, &verdict, &denials, report.as_ref());
            Ok::<_, LaunchError>(verdict)
        }
        .instrument(span.clone())
        .await;
        match &ran {
            Ok(verdict) => {
                span.record("verdict", verdict.kind());
                let failure = match verdict {
                    Verdict::Success | Verdict::Interrupted => None,
                    Verdict::Failed { status } => Some(status.clone()),
                    other => Some(other.kind().replace('_', " ")),
                };
                if let Some(failure) = failure {
                    mark_failed(&span, failure);
                }
            }
            Err(e) => mark_failed(&span, e),
        }
        ran
    }

    /// Starts `argv` under `policy` as a resident program (a server the
    /// kernel talks to over its pipes; see [`super::resident`]).
    pub async fn start_resident(
        &self,
        subject: &Subject,
        policy: &SandboxPolicy,
        argv: &[String],
    ) -> Result<ResidentProcess, ResidentError> {
        let mut policy = policy.clone();
        // Trust is given to skills by name, never to servers.
        let trusted = match subject.source {
            "skill" | "session" => subject.skill.as_deref(),
            _ => None,
        };
        self.enforce_config(&mut policy, trusted)?;
        self.audit_grants(subject, &policy);
        let spawned = self
            .helper
            .spawn(&policy, argv, Stdin::Piped, subject)
            .await?;
        let (started, setup) =
            ResidentProcess::start(spawned, std::sync::Arc::clone(&self.running)).await;
        let mut fields = Map::new();
        fields.insert("argv".into(), json!(argv));
        match &started {
            Ok(process) => fields.insert("pid".into(), json!(process.id())),
            Err(e) => fields.insert("error".into(), json!(e.to_string())),
        };
        self.audit.record("resident_start", subject, fields);
        match &setup {
            Setup::Applied(report) => self.audit_report(subject, report),
            Setup::Failed(failure) => self.audit.record(
                "setup_failed",
                subject,
                fields_of(json!({"program": argv.first(), "stage": failure.stage, "detail": failure.message})),
            ),
            Setup::Silent => {}
        }
        started
    }

    /// One exchange with the session `spec.name` (started if needed).
    pub async fn exchange(
        &self,
        spec: &SessionSpec,
        input: &str,
        sink: &mut impl OutputSink,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Exchange, SessionError> {
        let span = tracing::info_span!(
            "sandbox_exchange",
            session_program = %spec.name,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let exchanged = self
            .sessions
            .exchange(&self.helper, spec, input, sink, timeout, cancel)
            .instrument(span.clone())
            .await;
        if let Err(e) = &exchanged {
            mark_failed(&span, e);
        }
        exchanged
    }

    /// What this host supports, from `skillkernel sandbox-exec --probe`
    /// (run once, then cached).
    pub async fn host_support(&self) -> Result<HostSupport, String> {
        self.host
            .get_or_init(|| async {
                let output = tokio::process::Command::new(self.helper.path())
                    .args(["sandbox-exec", "--probe"])
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot run {} sandbox-exec --probe: {e}",
                            self.helper.path().display()
                        )
                    })?;
                serde_json::from_slice(&output.stdout).map_err(|e| {
                    format!(
                        "the sandbox probe answered something unreadable ({e}): {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    )
                })
            })
            .await
            .clone()
    }

    /// Kills every sandboxed process group now: programs running and
    /// sessions (the shutdown's Cleanup phase; synchronous on purpose).
    pub fn kill_all_now(&self) {
        let mut groups: Vec<i32> = skillkernel_stdx::lock(&self.running).drain().collect();
        groups.extend(self.sessions.process_groups());
        for pgid in &groups {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A root helper's pids cgroup empties once its processes have
        // exited (reaped or not); remove them rather than leave them to
        // the next start's sweep.
        for pgid in groups {
            super::cgroup::remove_run_cgroup(pgid as u32);
        }
    }
}

/// A running program's group in the set killed at exit, for as long as
/// this lives (also when the run's future is dropped half-way).
struct Tracked<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<i32>>,
    pgid: i32,
}

impl<'a> Tracked<'a> {
    fn new(set: &'a std::sync::Mutex<std::collections::HashSet<i32>>, pgid: i32) -> Self {
        skillkernel_stdx::lock(set).insert(pgid);
        Tracked { set, pgid }
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        skillkernel_stdx::lock(self.set).remove(&self.pgid);
    }
}

/// The program `argv` runs: its first word, or for `sh -c 'CMD …'` the
/// first word of the command (`~/` expanded, as the shell does).
fn program_of(argv: &[String]) -> Option<String> {
    let first = argv.first()?;
    let shell = Path::new(first)
        .file_name()
        .is_some_and(|n| n == "sh" || n == "bash");
    if !(shell && argv.get(1).map(String::as_str) == Some("-c")) {
        return Some(first.clone());
    }
    let word = argv.get(2)?.split_whitespace().next()?;
    if word.contains(['=', '$', '`', '(', '|', ';', '&', '<', '>', '"', '\'']) {
        return None;
    }
    match word.strip_prefix("~/") {
        Some(rest) => Some(format!("{}/{rest}", std::env::var("HOME").ok()?)),
        None => Some(word.to_owned()),
    }
}

/// The toolchains of the daemon's `PATH` under its home directory,
/// logged once.
fn home_toolchains() -> Vec<PathBuf> {
    let (Some(path), Some(home)) = (std::env::var_os("PATH"), std::env::var_os("HOME")) else {
        return Vec::new();
    };
    let (roots, warnings) = super::toolchains::roots(&path.to_string_lossy(), Path::new(&home));
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    if !roots.is_empty() {
        tracing::info!(roots = ?roots, "sandboxed programs may read the home directory's toolchains");
    }
    roots
}
