//! Network by host: the proxy a sandboxed program granted a list of hosts
//! (`permissions.network: [api.example.com]`, `[sandbox] network = [...]`)
//! reaches the network through.
//!
//! Such a program runs in a network namespace of its own, with only a
//! loopback interface: the helper's bridge (`helper/bridge.rs`) listens
//! there on `127.0.0.1:`[`PROXY_PORT`] and carries each connection to this
//! proxy's UNIX socket, one per run ([`RunProxy`]), which the daemon serves.
//! The program finds it through `HTTP_PROXY`, `HTTPS_PROXY` and
//! `ALL_PROXY` (set by the parent); there is no other way out.
//!
//! The proxy speaks HTTP `CONNECT`, plain HTTP in absolute form
//! (`GET http://host/…`, sent on as origin form with `Connection: close`)
//! and SOCKS5 (`CONNECT`, no authentication; names resolved here, so
//! `socks5h`). Every request is checked against the run's allow-list
//! ([`hosts`]) by the name the client asked for — names are resolved by
//! the daemon, never by the program — and recorded in the audit log as a
//! `network_connection` with host, port and verdict.
//!
//! This module must never connect anywhere the allow-list does not name.

pub mod hosts;
mod http;
mod socks;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::audit::{fields_of, AuditLog, Subject};
pub use hosts::{BadHostPattern, HostPattern, NetworkGrant};

/// The port the bridge listens on inside the run's network namespace
/// (each run has its own, so one fixed port serves them all).
pub const PROXY_PORT: u16 = 3128;

/// The longest request head (request line and headers) the proxy reads.
const MAX_HEAD: usize = 64 << 10;

/// Connections one run may hold open through its proxy.
const MAX_CONNECTIONS: usize = 256;

/// Refused `host:port`s kept for the run's error (each is audited anyway).
const MAX_DENIED_KEPT: usize = 32;

/// How long a client may take to say where it goes.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the daemon needs to serve proxies: where their sockets go, and
/// the audit log.
#[derive(Clone)]
pub struct ProxyHost {
    dir: PathBuf,
    audit: Arc<AuditLog>,
}

/// Where a daemon puts its runs' proxy sockets: a private folder with a
/// short path (a UNIX socket's path holds 107 bytes).
pub fn proxy_dir() -> PathBuf {
    let uid = nix::unistd::getuid();
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.as_os_str().len() < 60)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join(format!("skillkernel-{uid}-proxy"))
}

/// The environment that points a program at the proxy.
pub fn proxy_env() -> Vec<(String, String)> {
    let http = format!("http://127.0.0.1:{PROXY_PORT}");
    let socks = format!("socks5h://127.0.0.1:{PROXY_PORT}");
    let mut env = Vec::new();
    for (name, value) in [
        ("HTTP_PROXY", &http),
        ("HTTPS_PROXY", &http),
        ("ALL_PROXY", &socks),
    ] {
        env.push((name.to_string(), value.clone()));
        env.push((name.to_lowercase(), value.clone()));
    }
    env.push(("NO_PROXY".to_string(), String::new()));
    env.push(("no_proxy".to_string(), String::new()));
    env
}

impl std::fmt::Debug for ProxyHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHost").field("dir", &self.dir).finish()
    }
}

impl ProxyHost {
    /// Sockets in `dir` (short: a UNIX socket path holds 107 bytes).
    pub fn new(dir: PathBuf, audit: Arc<AuditLog>) -> Self {
        ProxyHost { dir, audit }
    }

    /// Starts a proxy for one run of `subject`, letting it reach `hosts`.
    pub fn start(&self, hosts: Vec<HostPattern>, subject: Subject) -> std::io::Result<RunProxy> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&self.dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        let name = format!(
            "p{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let stop = CancellationToken::new();
        let run = Arc::new(Run {
            hosts,
            subject,
            audit: Arc::clone(&self.audit),
            denied: Mutex::new(Vec::new()),
            owner: AtomicI32::new(0),
            connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        });
        tokio::spawn(serve(listener, Arc::clone(&run), stop.clone()));
        Ok(RunProxy { path, stop, run })
    }
}

/// One run's proxy: served until dropped, then its socket is removed.
pub struct RunProxy {
    path: PathBuf,
    stop: CancellationToken,
    run: Arc<Run>,
}

impl std::fmt::Debug for RunProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunProxy")
            .field("socket", &self.path)
            .finish()
    }
}

impl RunProxy {
    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// Serves only processes of the run's group `pgid` (its bridge): the
    /// socket's folder is reachable by other sandboxed programs, whose
    /// connections are refused.
    pub fn set_owner(&self, pgid: i32) {
        self.run.owner.store(pgid, Ordering::SeqCst);
    }

    /// `host:port` the run asked for and was refused, so far.
    pub fn denied(&self) -> Vec<String> {
        skillkernel_stdx::lock(&self.run.denied).clone()
    }
}

impl Drop for RunProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Run {
    hosts: Vec<HostPattern>,
    subject: Subject,
    audit: Arc<AuditLog>,
    denied: Mutex<Vec<String>>,
    /// The run's process group (0 until set: nobody is served).
    owner: AtomicI32,
    connections: Arc<tokio::sync::Semaphore>,
}

impl Run {
    /// Checks `host:port` and records the verdict.
    fn check(&self, via: &str, host: &str, port: u16) -> bool {
        let allowed = hosts::allowed(&self.hosts, host, port);
        if !allowed {
            self.remember_denied(host, port);
        }
        let verdict = if allowed { "allowed" } else { "denied" };
        self.record(via, host, port, verdict, None);
        allowed
    }

    /// Keeps `host:port` for the run's error (a bounded list).
    fn remember_denied(&self, host: &str, port: u16) {
        let target = format!("{host}:{port}");
        let mut denied = skillkernel_stdx::lock(&self.denied);
        if !denied.contains(&target) && denied.len() < MAX_DENIED_KEPT {
            denied.push(target);
        }
    }

    fn record(&self, via: &str, host: &str, port: u16, verdict: &str, detail: Option<String>) {
        let mut fields =
            fields_of(json!({"host": host, "port": port, "verdict": verdict, "via": via}));
        if let Some(detail) = detail {
            fields.insert("detail".into(), detail.into());
        }
        self.audit
            .record("network_connection", &self.subject, fields);
    }

    /// Connects to an allowed `host:port`, at an address checked here: a
    /// name (other than `localhost`) that resolves to a loopback or
    /// link-local address (the kernel's ports, a cloud's metadata service)
    /// is refused — grant such an address by IP if it is meant. Recorded.
    async fn connect(&self, via: &str, host: &str, port: u16) -> Result<TcpStream, Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let named_as_such =
            bare.parse::<std::net::IpAddr>().is_ok() || bare.eq_ignore_ascii_case("localhost");
        let resolved = match tokio::net::lookup_host((bare, port)).await {
            Ok(addrs) => addrs.collect::<Vec<_>>(),
            Err(e) => {
                self.record(via, host, port, "failed", Some(e.to_string()));
                return Err(Refusal::Failed);
            }
        };
        let usable: Vec<_> = resolved
            .iter()
            .filter(|a| named_as_such || !internal(a.ip()))
            .collect();
        if usable.is_empty() {
            let detail =
                format!("{host} resolves to {resolved:?}, a loopback or link-local address");
            self.record(via, host, port, "denied", Some(detail));
            self.remember_denied(host, port);
            return Err(Refusal::Denied);
        }
        let mut last = None;
        for addr in usable {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        let detail = last.map(|e| e.to_string());
        self.record(via, host, port, "failed", detail);
        Err(Refusal::Failed)
    }
}

/// Why [`Run::connect`] gave no connection.
enum Refusal {
    /// Not allowed after all (the name led somewhere internal).
    Denied,
    /// Could not resolve or connect.
    Failed,
}

/// Loopback, unspecified or link-local (`169.254/16`, `fe80::/10`).
fn internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| internal(v4.into()))
        }
    }
}

async fn serve(listener: UnixListener, run: Arc<Run>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait, do not spin.
                    tracing::warn!(error = %e, "sandbox proxy: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        if !run.owns(&stream) {
            tracing::warn!(
                peer = ?stream.peer_cred().ok().and_then(|c| c.pid()),
                "sandbox proxy: a process outside the run connected; refused"
            );
            continue;
        }
        let Ok(permit) = Arc::clone(&run.connections).try_acquire_owned() else {
            tracing::warn!(
                "sandbox proxy: {MAX_CONNECTIONS} connections open for one run; refused"
            );
            continue;
        };
        let run = Arc::clone(&run);
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = handle(stream, &run) => {}
            }
            drop(permit);
        });
    }
}

impl Run {
    /// Is the peer of `stream` a process of the run's group?
    fn owns(&self, stream: &UnixStream) -> bool {
        let owner = self.owner.load(Ordering::SeqCst);
        let Some(pid) = stream.peer_cred().ok().and_then(|c| c.pid()) else {
            return false;
        };
        owner > 0
            && nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                .is_ok_and(|g| g.as_raw() == owner)
    }
}

async fn handle(mut client: UnixStream, run: &Run) {
    let mut first = [0u8; 1];
    if client.read_exact(&mut first).await.is_err() {
        return;
    }
    if first[0] == socks::VERSION {
        socks::serve(client, run).await;
    } else {
        http::serve(client, first[0], run).await;
    }
}

/// Runs a request's opening exchange (head, handshake) within
/// [`HANDSHAKE_TIMEOUT`]; `None` when it took longer.
async fn in_time<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, work).await.ok()
}

/// Carries bytes both ways until either side closes.
async fn splice(
    mut a: impl AsyncRead + AsyncWrite + Unpin,
    mut b: impl AsyncRead + AsyncWrite + Unpin,
) {
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: PathBuf) -> ProxyHost {
        ProxyHost::new(dir, Arc::new(AuditLog::new(None)))
    }

    #[tokio::test]
    async fn a_proxy_that_cannot_bind_says_why_and_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, "").unwrap();
        let err = host(file.join("proxy"))
            .start(Vec::new(), Subject::cell())
            .unwrap_err();
        assert!(!err.to_string().is_empty());
        assert_eq!(err.kind(), std::io::ErrorKind::NotADirectory, "{err}");
        assert!(!file.join("proxy").exists());
        // The control: in a folder it can make, it serves and cleans up.
        let proxy = host(dir.path().join("proxy"))
            .start(Vec::new(), Subject::cell())
            .unwrap();
        let socket = proxy.socket().to_path_buf();
        assert!(socket.exists());
        drop(proxy);
        assert!(!socket.exists());
    }

    #[tokio::test]
    async fn a_host_off_the_list_gets_403_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = vec![HostPattern::parse("example.com:443").unwrap()];
        let proxy = host(dir.path().join("p"))
            .start(allowed, Subject::cell())
            .unwrap();
        // Nobody is served before the run's group is known...
        let mut early = UnixStream::connect(proxy.socket()).await.unwrap();
        let mut nothing = Vec::new();
        early.read_to_end(&mut nothing).await.unwrap();
        assert!(nothing.is_empty());
        // ...then the run's own processes are (here: the test's group).
        proxy.set_owner(nix::unistd::getpgrp().as_raw());
        let mut client = UnixStream::connect(proxy.socket()).await.unwrap();
        use tokio::io::AsyncWriteExt;
        client
            .write_all(b"CONNECT 10.1.2.3:22 HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("10.1.2.3:22"), "{answer}");
        assert_eq!(proxy.denied(), vec!["10.1.2.3:22".to_string()]);
    }
}
