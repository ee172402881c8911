//! MCP clients for the tests: the official MCP Python SDK
//! (`tests/mcp/mcp_client.py`, run with the test venv's python, where the
//! README's test command installs `mcp`), and raw HTTP for what an SDK
//! would not send (a wrong token, a body that is not JSON-RPC).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Runs `ops` on one connection of the Python SDK's client over
/// `transport` (`{"http": URL, "token": T}` or `{"stdio": [CMD, ARGS…]}`);
/// returns what the script printed: `{"protocol", "results"}` or
/// `{"error", "results"}`.
pub fn sdk_client(transport: &Value, ops: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/mcp_client.py");
    let mut child = Command::new(crate::otlp::python())
        .arg(&script)
        .arg(transport.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the MCP SDK client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ops.to_string().as_bytes())
        .expect("send the operations");
    let out = child.wait_with_output().expect("the MCP SDK client ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the MCP client printed no result ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// One raw HTTP/1.1 request to `port`; the status code and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body.as_bytes()).expect("send body");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A program the test venv installed (`mcp-server-time`, `mcp-server-git`).
pub fn venv_program(name: &str) -> std::path::PathBuf {
    let program = crate::otlp::python()
        .parent()
        .expect("the venv's bin")
        .join(name);
    assert!(
        program.exists(),
        "{} is missing: run scripts/test (it installs tests/conformance/requirements.txt)",
        program.display()
    );
    program
}

/// npm's `@modelcontextprotocol/server-everything`, which scripts/test
/// installs under `SKILLKERNEL_MCP_NPM` when npm is there; `None` (the
/// test says it skips) when this machine has no Node.
pub fn server_everything() -> Option<std::path::PathBuf> {
    let prefix = std::env::var_os("SKILLKERNEL_MCP_NPM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/skillkernel/npm-mcp")
        });
    let program = prefix.join("node_modules/.bin/mcp-server-everything");
    if program.exists() {
        return Some(program);
    }
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_err(),
        "{} is missing though Node is here: run scripts/test (it installs it with npm)",
        program.display()
    );
    eprintln!("skipped: no Node on this machine for @modelcontextprotocol/server-everything");
    None
}
