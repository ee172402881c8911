//! Network by host: `[sandbox] network` and a skill's
//! `permissions.network` as a list of hosts. The program runs in a
//! network namespace of its own and reaches exactly those hosts through
//! the daemon's proxy — HTTP in absolute form, HTTP `CONNECT` and SOCKS5 —
//! while a host off the list (through the proxy or straight), the kernel's
//! own ports and DNS to a resolver of the test's own get nothing. Servers
//! count what reaches them, so each refusal is checked where it matters,
//! beside the same program reaching the allowed host.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{bin, run, shown, Daemon, Launch};
use serde_json::Value;
use skillctl::{ExecuteOutcome, KernelClient};

/// An HTTP server answering `body` to anything, counting connections.
fn server(body: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read(&mut buf);
            let reply = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, count)
}

/// A UDP "resolver" counting datagrams.
fn resolver() -> (u16, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while socket.recv_from(&mut buf).is_ok() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

struct Setup {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    config: PathBuf,
}

/// Scripts in the workspace, a skill granted the allowed host, a config.
fn setup(allowed: u16) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let workspace = root.join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("fetch.py"), FETCH).unwrap();
    std::fs::write(workspace.join("socks.py"), SOCKS).unwrap();
    std::fs::write(workspace.join("tunnel.py"), TUNNEL).unwrap();
    std::fs::write(workspace.join("direct.py"), DIRECT).unwrap();
    let skill = root.join("skills/fetcher");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(
        skill.join("skill.yaml"),
        format!(
            "name: fetcher\nversion: 1.0.0\ndescription: Fetches a URL.\ntype: command\n\
             command: /usr/bin/python3\nargs: [fetch.py, \"{{{{input}}}}\"]\n\
             permissions:\n  network: [\"localhost:{allowed}\"]\n"
        ),
    )
    .unwrap();
    // The positive control of the direct probes: the same script with
    // the whole network.
    let opener = root.join("skills/opener");
    std::fs::create_dir_all(&opener).unwrap();
    std::fs::write(
        opener.join("skill.yaml"),
        "name: opener\nversion: 1.0.0\ndescription: Sends straight.\ntype: command\n\
         command: /usr/bin/python3\nargs: [direct.py, \"{{kind}}\", \"{{input}}\"]\n\
         parameters:\n  - name: kind\npermissions:\n  network: true\n",
    )
    .unwrap();
    // A shell session granted the host: its proxy lives as long as it.
    let session = root.join("skills/netsh");
    std::fs::create_dir_all(&session).unwrap();
    std::fs::write(
        session.join("skill.yaml"),
        format!(
            "name: netsh\nversion: 1.0.0\ndescription: A shell with one host.\ntype: session\n\
             command: /bin/sh\npermissions:\n  network: [\"127.0.0.1:{allowed}\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(workspace.join("steal.py"), STEAL).unwrap();
    let config = root.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n\
             [sandbox]\nnetwork = [\"127.0.0.1:{allowed}\", \"localhost:{allowed}\"]\n",
            root.join("skills"),
            root.join("user-skills")
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        workspace,
        config,
    }
}

const FETCH: &str = r#"
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
except Exception as e:
    print("fetch failed:", e, file=sys.stderr)
    sys.exit(1)
"#;

const SOCKS: &str = r#"
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(b"\x05\x01\x00")
assert s.recv(2) == b"\x05\x00"
s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host.encode() + struct.pack(">H", port))
reply = s.recv(10)
if reply[1] != 0:
    print("socks refused, reply", reply[1], file=sys.stderr)
    sys.exit(1)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode().split("\r\n\r\n", 1)[1])
"#;

const TUNNEL: &str = r#"
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
conn.set_tunnel(sys.argv[1], int(sys.argv[2]))
try:
    conn.request("GET", "/")
    print(conn.getresponse().read().decode())
except OSError as e:
    print("tunnel failed:", e, file=sys.stderr)
    sys.exit(1)
"#;

const DIRECT: &str = r#"
import socket, sys
kind, port = sys.argv[1], int(sys.argv[2])
try:
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(3):
            s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01", ("127.0.0.1", port))
        s.sendto(b"x", ("8.8.8.8", 53))
    else:
        socket.create_connection(("127.0.0.1", port), timeout=5).sendall(b"GET / HTTP/1.0\r\n\r\n")
    print("sent")
except OSError as e:
    print("direct failed:", e, file=sys.stderr)
    sys.exit(1)
"#;

/// Connects straight to a proxy socket (another run's) and asks for a
/// tunnel: `refused` when the proxy closes without answering.
const STEAL: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    s.sendall(b"CONNECT 127.0.0.1:%s HTTP/1.1\r\n\r\n" % sys.argv[2].encode())
    answer = s.recv(100)
    print("answered" if answer else "refused", answer)
except OSError as e:
    print("refused", e)
"#;

/// The proxy sockets of daemon `daemon_pid`'s runs.
fn proxy_sockets(daemon_pid: i32) -> Vec<PathBuf> {
    let dir = skillkernel_sandbox::proxy::proxy_dir();
    let prefix = format!("p{daemon_pid}-");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn start(s: &Setup) -> Daemon {
    let launch = Launch {
        cwd: Some(s.workspace.clone()),
        ..Launch::default()
    };
    Daemon::start_with(launch, &["--config", s.config.to_str().unwrap()])
}

fn said(outcome: &ExecuteOutcome) -> String {
    shown(outcome) + &outcome.reply.content.to_string()
}

async fn ok(client: &mut KernelClient, code: &str, expected: &str, daemon: &Daemon) {
    let outcome = run(client, code).await;
    assert_eq!(
        outcome.status(),
        "ok",
        "{code}: {}\n{}",
        said(&outcome),
        daemon.log()
    );
    assert!(
        shown(&outcome).contains(expected),
        "{code}: {}",
        said(&outcome)
    );
}

async fn refused(client: &mut KernelClient, code: &str) -> String {
    let outcome = run(client, code).await;
    assert_eq!(outcome.status(), "error", "{code}: {}", said(&outcome));
    said(&outcome)
}

fn audit(daemon: &Daemon) -> Vec<Value> {
    std::fs::read_to_string(daemon.dir.path().join("state/sandbox-audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_hosts_on_the_list_are_reached_and_only_through_the_proxy() {
    let (allowed, allowed_hits) = server("hello from the allowed host");
    let (other, other_hits) = server("the other host");
    let (dns, dns_hits) = resolver();
    let s = setup(allowed);
    let daemon = start(&s);
    let mut client = daemon.client().await;

    // The allowed host, three ways through the proxy.
    let hello = "hello from the allowed host";
    let url = format!("http://127.0.0.1:{allowed}/");
    ok(
        &mut client,
        &format!("!python3 fetch.py {url}"),
        hello,
        &daemon,
    )
    .await;
    ok(
        &mut client,
        &format!("!python3 tunnel.py 127.0.0.1 {allowed}"),
        hello,
        &daemon,
    )
    .await;
    ok(
        &mut client,
        &format!("!python3 socks.py localhost {allowed}"),
        hello,
        &daemon,
    )
    .await;
    ok(&mut client, &format!("!curl -sS {url}"), hello, &daemon).await;
    assert!(allowed_hits.load(Ordering::SeqCst) >= 4);

    // Another host: refused by the proxy, unreachable straight.
    let other_url = format!("http://127.0.0.1:{other}/");
    let text = refused(&mut client, &format!("!python3 fetch.py {other_url}")).await;
    assert!(
        text.contains("403") || text.contains("allow-list"),
        "{text}"
    );
    refused(
        &mut client,
        &format!("!python3 tunnel.py 127.0.0.1 {other}"),
    )
    .await;
    refused(&mut client, &format!("!python3 socks.py 127.0.0.1 {other}")).await;
    refused(&mut client, &format!("!python3 direct.py tcp {other}")).await;
    // The kernel's own shell port: not there for the program.
    let shell = daemon.info.shell_port;
    refused(&mut client, &format!("!python3 direct.py tcp {shell}")).await;
    refused(
        &mut client,
        &format!("!python3 tunnel.py 127.0.0.1 {shell}"),
    )
    .await;
    // DNS to a resolver of the test's own: the datagrams go nowhere.
    let _ = run(&mut client, &format!("!python3 direct.py udp {dns}")).await;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        other_hits.load(Ordering::SeqCst),
        0,
        "the other host was reached"
    );
    assert_eq!(
        dns_hits.load(Ordering::SeqCst),
        0,
        "the resolver was reached"
    );
    // Controls: with the whole network the same script reaches both.
    for (kind, port) in [("tcp", other), ("udp", dns)] {
        let code = format!("%skill run opener kind={kind} -- {port}");
        ok(&mut client, &code, "sent", &daemon).await;
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(other_hits.load(Ordering::SeqCst), 1);
    assert!(dns_hits.load(Ordering::SeqCst) >= 1);

    // A skill granted the host by name.
    let skill = run(
        &mut client,
        &format!("%skill run fetcher -- http://localhost:{allowed}/"),
    )
    .await;
    assert_eq!(skill.status(), "ok", "{}\n{}", said(&skill), daemon.log());
    assert!(shown(&skill).contains(hello));
    let text = refused(&mut client, &format!("%skill run fetcher -- {url}")).await;
    assert!(text.contains(&format!("127.0.0.1:{allowed}")), "{text}");

    // Every connection is in the audit log with host, port and verdict.
    let log = audit(&daemon);
    let connections: Vec<&Value> = log
        .iter()
        .filter(|e| e["event"] == "network_connection")
        .collect();
    let has = |host: &str, port: u16, verdict: &str, via: &str| {
        connections.iter().any(|e| {
            e["host"] == host && e["port"] == port && e["verdict"] == verdict && e["via"] == via
        })
    };
    for (host, port, verdict, via) in [
        ("127.0.0.1", allowed, "allowed", "http"),
        ("127.0.0.1", allowed, "allowed", "http_connect"),
        ("localhost", allowed, "allowed", "socks5"),
        ("127.0.0.1", other, "denied", "http"),
        ("127.0.0.1", other, "denied", "socks5"),
        ("127.0.0.1", shell, "denied", "http_connect"),
    ] {
        assert!(
            has(host, port, verdict, via),
            "{host}:{port} {verdict} {via}: {connections:?}"
        );
    }
    assert!(
        connections
            .iter()
            .any(|e| e["skill"] == "fetcher" && e["verdict"] == "allowed"),
        "{connections:?}"
    );

    // A session keeps its proxy from one exchange to the next, and a
    // program of another run cannot use it.
    let fetch = format!("%skill run netsh -- python3 fetch.py {url}");
    for _ in 0..2 {
        ok(&mut client, &fetch, hello, &daemon).await;
    }
    let sockets = proxy_sockets(daemon.pid());
    assert_eq!(sockets.len(), 1, "the session's proxy only: {sockets:?}");
    let before = allowed_hits.load(Ordering::SeqCst);
    let steal = format!("!python3 steal.py {} {allowed}", sockets[0].display());
    let stolen = run(&mut client, &steal).await;
    assert!(shown(&stolen).contains("refused"), "{}", said(&stolen));
    assert_eq!(allowed_hits.load(Ordering::SeqCst), before);
    ok(&mut client, &fetch, hello, &daemon).await;

    // Operators see the list.
    let status = run(&mut client, "%sandbox status").await;
    assert!(
        shown(&status).contains(&format!("by host: 127.0.0.1:{allowed}")),
        "{}",
        shown(&status)
    );
}

#[test]
fn a_host_pattern_that_is_not_a_host_is_named_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[sandbox]\nnetwork = [\"https://api.example.com\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin("skillkernel"))
        .args(["config", "--check", "--config"])
        .arg(&config)
        .env("SKILLKERNEL_SYSTEM_CONFIG", "")
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a host pattern"), "{err}");
    assert!(err.contains("network"), "{err}");
}
