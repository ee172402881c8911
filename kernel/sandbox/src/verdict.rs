//! What a sandboxed run's ending means: success, the program's own
//! failure, or the sandbox stepping in (a denied path or network, a limit
//! kill, a timeout, a set-up failure).
//!
//! The layers act inside the kernel, out of the parent's sight: Landlock
//! and seccomp make a system call fail with `EACCES`, rlimits make one fail
//! or send a signal. So denials are read from what the program says on
//! stderr (the messages libc, coreutils, Python and shells print for those
//! errors), and limit kills from the signal that ended it. This is
//! evidence, not proof: a program that hides its errors hides them here
//! too; the layers hold either way.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::launch::Setup;
use super::run::{Ending, Finished};
use super::{SandboxPolicy, SetupFailure, SetupStage};

/// A resource limit that ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Cpu,
    Memory,
    FileSize,
    Processes,
    Output,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Cpu => "cpu",
            Limit::Memory => "memory",
            Limit::FileSize => "file_size",
            Limit::Processes => "processes",
            Limit::Output => "output",
        }
    }
}

/// Something the sandbox refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Denial {
    /// A file operation; `path` when the message names one.
    Path {
        path: Option<String>,
        line: String,
        /// The path is on the deny list: no `read` grant opens it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        kept_shut: bool,
    },
    Network {
        line: String,
    },
    /// A host off the run's network allow-list, refused by the proxy
    /// (`host:port`; the proxy audits it).
    Host {
        target: String,
    },
}

/// The meaning of a finished run.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Success,
    /// The program failed on its own (`exit status 3`, `signal 6`).
    Failed {
        status: String,
    },
    /// It failed after the sandbox refused something.
    Denied(Vec<Denial>),
    LimitKilled {
        limit: Limit,
        detail: String,
    },
    TimedOut {
        after: Duration,
    },
    Interrupted,
    SetupFailed(SetupFailure),
}

impl Verdict {
    /// Every [`Verdict::kind`], in a fixed order.
    pub const KINDS: [&'static str; 7] = [
        "success",
        "failed",
        "denied",
        "limit_killed",
        "timed_out",
        "interrupted",
        "setup_failed",
    ];

    /// What kind of ending this is, one of [`Verdict::KINDS`] (a bounded
    /// label for metrics).
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    pub(crate) fn kind_index(&self) -> usize {
        match self {
            Verdict::Success => 0,
            Verdict::Failed { .. } => 1,
            Verdict::Denied(_) => 2,
            Verdict::LimitKilled { .. } => 3,
            Verdict::TimedOut { .. } => 4,
            Verdict::Interrupted => 5,
            Verdict::SetupFailed(_) => 6,
        }
    }
}

/// Reads `finished` under `policy`. Denials are also returned for a run
/// that succeeded anyway, for the audit log.
pub fn judge(finished: &Finished, policy: &SandboxPolicy) -> (Verdict, Vec<Denial>) {
    let denials = denials(&finished.stderr_tail, policy);
    let status = match (&finished.setup, finished.ending) {
        (Setup::Failed(failure), _) => return (Verdict::SetupFailed(failure.clone()), denials),
        (_, Ending::TimedOut) => {
            let after = finished.elapsed;
            return (Verdict::TimedOut { after }, denials);
        }
        (_, Ending::Interrupted) => return (Verdict::Interrupted, denials),
        (_, Ending::OutputCapped) => {
            let detail = format!(
                "it wrote more than the output cap ({} bytes)",
                finished.output_bytes
            );
            let limit = Limit::Output;
            return (Verdict::LimitKilled { limit, detail }, denials);
        }
        (Setup::Silent, Ending::Exited(status)) if !status.success() => {
            let failure = SetupFailure {
                stage: SetupStage::Exec,
                message: format!(
                    "the sandbox helper ended ({}) before starting the program",
                    describe(status)
                ),
                exit_code: status.code().unwrap_or(super::EXIT_SETUP_FAILED as i32) as u8,
            };
            return (Verdict::SetupFailed(failure), denials);
        }
        (_, Ending::Exited(status)) => status,
    };
    if status.success() {
        return (Verdict::Success, denials);
    }
    if let Some((limit, detail)) = limit_hit(status, finished, policy) {
        return (Verdict::LimitKilled { limit, detail }, denials);
    }
    if !denials.is_empty() {
        return (Verdict::Denied(denials.clone()), denials);
    }
    let status = describe(status);
    (Verdict::Failed { status }, denials)
}

/// `exit status 3`, `signal 9 (SIGKILL)`.
pub fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!("signal {signal} ({name})"),
            Err(_) => format!("signal {signal}"),
        },
        _ => "an unknown status".into(),
    }
}

fn limit_hit(
    status: std::process::ExitStatus,
    finished: &Finished,
    policy: &SandboxPolicy,
) -> Option<(Limit, String)> {
    let limits = &policy.limits;
    // A shell reports a child killed by signal N as exit status 128 + N.
    let signal = status.signal().or_else(|| {
        status
            .code()
            .filter(|c| (129..160).contains(c))
            .map(|c| c - 128)
    });
    match signal {
        Some(libc::SIGXCPU) => {
            return Some((Limit::Cpu, cpu_detail(limits.cpu_secs)));
        }
        Some(libc::SIGXFSZ) => {
            return Some((Limit::FileSize, size_detail(limits.file_size_bytes)));
        }
        // SIGKILL from nobody in the daemon: the CPU limit's hard stop
        // (one second after SIGXCPU), when it ran that long.
        Some(libc::SIGKILL)
            if limits
                .cpu_secs
                .is_some_and(|s| finished.elapsed >= Duration::from_secs(s)) =>
        {
            return Some((Limit::Cpu, cpu_detail(limits.cpu_secs)));
        }
        _ => {}
    }
    let tail = finished.stderr_tail.to_lowercase();
    let says = |needles: &[&str]| needles.iter().any(|n| tail.contains(n));
    if says(&["file too large"]) {
        return Some((Limit::FileSize, size_detail(limits.file_size_bytes)));
    }
    if limits.address_space_bytes.is_some()
        && says(&[
            "memoryerror",
            "cannot allocate memory",
            "out of memory",
            "bad_alloc",
            "memory allocation of",
            "failed to allocate",
        ])
    {
        let mib = limits.address_space_bytes.unwrap_or_default() >> 20;
        return Some((
            Limit::Memory,
            format!("it ran out of its memory limit ({mib} MiB of address space)"),
        ));
    }
    if says(&[
        "fork: resource temporarily unavailable",
        "fork: retry",
        "cannot fork",
        "blockingioerror: [errno 11]",
        "can't fork",
    ]) {
        return Some((
            Limit::Processes,
            format!(
                "it hit the process limit ({} processes)",
                limits.processes.unwrap_or_default()
            ),
        ));
    }
    None
}

fn cpu_detail(secs: Option<u64>) -> String {
    format!(
        "it used up its CPU time ({} s)",
        secs.map_or("?".into(), |s| s.to_string())
    )
}

fn size_detail(bytes: Option<u64>) -> String {
    let mib = bytes.unwrap_or_default() as f64 / f64::from(1 << 20);
    format!("it wrote a file over the file size limit ({mib:.1} MiB)")
}

/// The denials `stderr` reports.
pub fn denials(stderr: &str, policy: &SandboxPolicy) -> Vec<Denial> {
    let lower = stderr.to_lowercase();
    let networky = ["socket", "connect", "urlopen", "network", "getaddrinfo"]
        .iter()
        .any(|w| lower.contains(w));
    let mut found = Vec::new();
    for line in stderr.lines() {
        let l = line.to_lowercase();
        // Landlock and the seccomp filter both refuse with EACCES.
        let refused = l.contains("permission denied");
        let unresolved = !policy.network
            && (l.contains("temporary failure in name resolution")
                || l.contains("could not resolve host")
                || l.contains("network is unreachable"));
        if !(refused || unresolved) {
            continue;
        }
        let line = line.trim().chars().take(300).collect::<String>();
        let path = path_in(&line);
        let kept_shut = path
            .as_deref()
            .is_some_and(|p| is_denied(Path::new(p), policy));
        // Where the program may write, nothing the sandbox does refuses
        // anything but the deny list: a denial there is the file's own
        // permissions.
        if !kept_shut
            && path
                .as_deref()
                .is_some_and(|p| inside_writable(Path::new(p), policy))
        {
            continue;
        }
        let denial = if unresolved || (!policy.network && networky && path.is_none()) {
            Denial::Network { line }
        } else {
            Denial::Path {
                path,
                line,
                kept_shut,
            }
        };
        if !found.contains(&denial) {
            found.push(denial);
        }
    }
    found
}

/// Is `path` (relative ones are in the workspace) at or inside one of the
/// policy's denied paths, as written or resolved through links?
fn is_denied(path: &Path, policy: &SandboxPolicy) -> bool {
    let path = match &policy.workspace {
        Some(w) => w.join(path),
        None => path.to_path_buf(),
    };
    let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    policy
        .deny
        .iter()
        .any(|d| path.starts_with(d) || real.starts_with(d))
}

/// Is `path` (relative ones are in the workspace), resolved through
/// symlinks as Landlock resolves it, inside a writable path?
fn inside_writable(path: &Path, policy: &SandboxPolicy) -> bool {
    let Some(workspace) = &policy.workspace else {
        return false;
    };
    let path = workspace.join(path);
    // A file that does not exist (one being created): its folder.
    let real = std::fs::canonicalize(&path).or_else(|_| {
        path.parent()
            .map_or(Err(()), |d| std::fs::canonicalize(d).map_err(drop))
    });
    let Ok(real) = real else {
        return false;
    };
    policy
        .write
        .iter()
        .chain([workspace])
        .filter(|root| root.as_path() != Path::new("/dev/null"))
        .filter_map(|root| std::fs::canonicalize(root).ok())
        .any(|root| real.starts_with(root))
}

/// The path a denial message names: Python's `…: '/etc/shadow'`, or
/// coreutils' `cat: /etc/shadow: Permission denied`.
fn path_in(line: &str) -> Option<String> {
    if let Some(start) = line.rfind(": '") {
        let rest = &line[start + 3..];
        if let Some(end) = rest.find('\'') {
            return Some(rest[..end].to_owned());
        }
    }
    // `sh: 1: cannot create out/x: …`, `ls: cannot open directory …`.
    for verb in [
        "cannot create ",
        "cannot open ",
        "can't open ",
        "cannot access ",
    ] {
        if let Some(at) = line.find(verb) {
            let rest = line[at + verb.len()..].trim_start_matches("directory ");
            let word = rest.split(':').next().unwrap_or("").trim();
            let word = word.trim_matches(|c| c == '\'' || c == '"' || c == '`');
            if !word.is_empty() {
                return Some(word.to_owned());
            }
        }
    }
    // `cat: kernel.json: Permission denied` (coreutils, relative).
    if let Some((_, path)) = line
        .strip_suffix(": Permission denied")
        .and_then(|head| head.rsplit_once(": "))
    {
        if !path.is_empty() && !path.starts_with('(') {
            return Some(path.to_owned());
        }
    }
    // `cat: /etc/shadow: …`, `sh: 1: ./run.sh: …`.
    line.split([' ', ':', '\'', '"', '`'])
        .find(|word| (word.starts_with('/') && word.len() > 1) || word.starts_with("./"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_messages_name_their_path() {
        assert_eq!(
            path_in("cat: /etc/shadow: Permission denied").as_deref(),
            Some("/etc/shadow")
        );
        assert_eq!(
            path_in("PermissionError: [Errno 13] Permission denied: '/root/.ssh/id_rsa'")
                .as_deref(),
            Some("/root/.ssh/id_rsa")
        );
        assert_eq!(
            path_in("sh: 1: cannot create /tmp/out/x: Permission denied").as_deref(),
            Some("/tmp/out/x")
        );
        assert_eq!(
            path_in("sh: 1: cannot create x: Permission denied").as_deref(),
            Some("x")
        );
    }

    #[test]
    fn permission_errors_inside_the_workspace_are_not_sandbox_denials() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        let policy = SandboxPolicy::for_workspace(dir.path());
        let own = "sh: 1: ./run.sh: Permission denied\nPermissionError: [Errno 13] Permission denied: 'data.csv'\n";
        assert!(
            denials(own, &policy).is_empty(),
            "{:?}",
            denials(own, &policy)
        );
        let escaped = "sh: 1: cannot create out/x: Permission denied\n";
        let own_file = "sh: 1: cannot create x: Permission denied\n";
        assert!(denials(own_file, &policy).is_empty());
        let through_link = format!(
            "cp: cannot create regular file '{}/out/x': Permission denied\n",
            dir.path().display()
        );
        assert_eq!(denials(&through_link, &policy).len(), 1);
        assert_eq!(denials(escaped, &policy).len(), 1, "a symlink out");
        assert!(denials("kill: (1) - Operation not permitted\n", &policy).is_empty());
        // The deny list holds inside the workspace too.
        let mut guarded = policy.clone();
        guarded.deny.push(dir.path().join("kernel.json"));
        let shut = denials("cat: kernel.json: Permission denied\n", &guarded);
        assert!(
            matches!(
                &shut[..],
                [Denial::Path {
                    kept_shut: true,
                    ..
                }]
            ),
            "{shut:?}"
        );
    }

    #[test]
    fn a_refused_socket_is_a_network_denial_and_a_file_a_path_denial() {
        let policy = SandboxPolicy::default();
        let socket =
            "Traceback:\n  s = socket.socket()\nPermissionError: [Errno 13] Permission denied\n";
        assert!(matches!(
            denials(socket, &policy).as_slice(),
            [Denial::Network { .. }]
        ));
        let file = "cat: /etc/shadow: Permission denied\n";
        assert!(matches!(
            denials(file, &policy).as_slice(),
            [Denial::Path { path: Some(p), .. }] if p == "/etc/shadow"
        ));
        assert!(denials("all good\n", &policy).is_empty());
    }
}
