//! The communication port: where the gateway reaches a kernel it launched
//! for what ZeroMQ cannot carry — signals, and the word that it lets go.
//!
//! Each request is one TCP connection carrying one JSON object, ended by
//! the gateway closing its side (EG's `_send_listener_request`):
//!
//! * `{"signum": 0}` — "are you alive?", sent every few seconds by the
//!   gateway's restarter; the connection itself is the answer.
//! * `{"signum": N}` — deliver signal N to the kernel, as EG's own
//!   launchers do with `os.kill`: SIGINT interrupts, SIGTERM shuts down
//!   with the grace period, SIGKILL ends the process.
//! * `{"shutdown": 1}` — the gateway is done with this kernel. Nobody would
//!   signal it after that, so the kernel shuts down rather than live on
//!   unowned; the port keeps answering until the process exits, because
//!   jupyter_client sends this right after `shutdown_request` and then
//!   polls (signal 0) to learn when the kernel is really gone.
//!
//! Every request is also a sign of life from the gateway. With an
//! orphan timeout set, a kernel that hears nothing for that long after
//! the gateway's first word takes it for gone and shuts down, ending with
//! a non-zero exit. The clock starts at the first request: EG's container
//! proxies (Kubernetes, Docker) watch the pod instead and never probe the
//! port, and their kernels must not time out for it.

use std::time::Duration;

use serde_json::Value;
use skillkernel_kernel::{KernelHandle, ShutdownOrigin};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Longest a request may take to arrive once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request read; the real ones are a few dozen bytes.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// Why the listener ended: nothing came from the gateway within the
/// orphan timeout (it serves until the process exits otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayLost;

/// Pause after a failed accept (e.g. out of file descriptors), so the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One request, as the gateway sends it.
#[derive(Debug, PartialEq)]
enum Request {
    /// Deliver this signal (0: only a liveness probe).
    Signal(i32),
    /// Stop listening: the gateway lets the kernel go.
    Shutdown,
    /// Both (EG never sends it, but the object allows it).
    SignalThenShutdown(i32),
}

fn parse(bytes: &[u8]) -> Result<Request, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON object: {e}"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let signum = match object.get("signum") {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| (0..=64).contains(n))
                .ok_or_else(|| format!("signum {n} is not a signal number"))?,
        ),
    };
    let shutdown = match object.get("shutdown") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(n) => n.as_i64().is_some_and(|n| n != 0),
    };
    match (signum, shutdown) {
        (Some(n), true) => Ok(Request::SignalThenShutdown(n)),
        (Some(n), false) => Ok(Request::Signal(n)),
        (None, true) => Ok(Request::Shutdown),
        (None, false) => Err("neither signum nor shutdown".into()),
    }
}

/// Serves the communication port until the process ends, or until the
/// gateway, once heard from, falls silent for `orphan_timeout`.
pub async fn serve(
    listener: TcpListener,
    kernel: KernelHandle,
    orphan_timeout: Option<Duration>,
) -> GatewayLost {
    let mut last_word: Option<Instant> = None;
    let mut released = false;
    loop {
        let deadline = orphan_timeout
            .zip(last_word)
            .filter(|_| !released)
            .map(|(timeout, at)| at + timeout);
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = sleep_until(deadline) => {
                tracing::error!(
                    timeout_secs = orphan_timeout.map_or(0, |t| t.as_secs()),
                    "no word from Enterprise Gateway on the communication port within the orphan timeout: it is gone; shutting down so no kernel is left running unowned"
                );
                kernel.shutdown(ShutdownOrigin::ParentExited);
                return GatewayLost;
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "communication port: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let request = match read_request(stream).await {
            Ok(request) => request,
            Err(reason) => {
                tracing::warn!(%reason, "communication port: request ignored");
                continue;
            }
        };
        last_word = Some(Instant::now());
        let (signum, release) = match request {
            Request::Signal(signum) => (signum, false),
            Request::Shutdown => (0, true),
            Request::SignalThenShutdown(signum) => (signum, true),
        };
        deliver(signum);
        if release && !released {
            released = true;
            tracing::info!("Enterprise Gateway released the kernel (shutdown on the communication port); shutting down");
            kernel.shutdown(ShutdownOrigin::ParentExited);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn read_request(stream: TcpStream) -> Result<Request, String> {
    let mut bytes = Vec::new();
    let mut limited = stream.take(MAX_REQUEST_BYTES);
    let read = limited.read_to_end(&mut bytes);
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Err(_) => return Err("the request did not end within 5 s".into()),
        Ok(Err(e)) => return Err(format!("read failed: {e}")),
        Ok(Ok(_)) => {}
    }
    parse(&bytes)
}

/// Delivers `signum` to this process, where the daemon's signal handling
/// (or, for SIGKILL, the system) takes over.
fn deliver(signum: i32) {
    if signum == 0 {
        return;
    }
    tracing::info!(signum, "signal from Enterprise Gateway");
    // SAFETY: kill(2) on our own pid with a checked signal number.
    if unsafe { libc::kill(std::process::id() as libc::pid_t, signum) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(signum, error = %e, "cannot deliver the gateway's signal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_the_gateway_sends_them() {
        assert_eq!(parse(br#"{"signum": 0}"#), Ok(Request::Signal(0)));
        assert_eq!(parse(br#"{"signum": 2}"#), Ok(Request::Signal(2)));
        assert_eq!(parse(br#"{"shutdown": 1}"#), Ok(Request::Shutdown));
        assert_eq!(parse(br#"{"shutdown": true}"#), Ok(Request::Shutdown));
        assert_eq!(
            parse(br#"{"signum": 15, "shutdown": 1}"#),
            Ok(Request::SignalThenShutdown(15))
        );
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        for (bad, why) in [
            (&b"{"[..], "not a JSON object"),
            (b"[1]", "not a JSON object"),
            (br#"{"signum": "two"}"#, "not a signal number"),
            (br#"{"signum": 999}"#, "not a signal number"),
            (br#"{"signum": -9}"#, "not a signal number"),
            (br#"{"shutdown": 0}"#, "neither"),
            (b"{}", "neither"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(bad));
        }
    }
}
