//! `!command` cells: a child process whose stdout and stderr stream into
//! the notebook as they come.
//!
//! The command runs under `/bin/sh -c` in its own process group, so an
//! interrupt or timeout kills the whole pipeline it started. (A sandbox
//! around it arrives with command skills.)

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use skillkernel_protocol::content::StreamName;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::errors::KernelError;
use crate::execute::ExecContext;

/// How often buffered output is published while a command runs.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// How long a killed group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// Runs `script` with `sh -c`, streaming its output.
pub async fn run(ctx: &mut ExecContext<'_>, script: &str) -> Result<(), KernelError> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| KernelError::CommandSpawn(e.to_string()))?;
    let pgid = child.id().map(|id| id as i32);
    if let Some(pgid) = pgid {
        ctx.shared.track_child(pgid);
    }
    let result = pump(ctx, &mut child).await;
    if let Some(pgid) = pgid {
        if result.is_err() {
            kill_group(pgid, &mut child).await;
        }
        ctx.shared.untrack_child(pgid);
    }
    result
}

async fn pump(
    ctx: &mut ExecContext<'_>,
    child: &mut tokio::process::Child,
) -> Result<(), KernelError> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];
    // Bytes of an incomplete UTF-8 sequence carried to the next read.
    let mut out_carry = Vec::new();
    let mut err_carry = Vec::new();
    let timeout = ctx.shared.command_timeout();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cancel = ctx.cancel.clone();
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            n = read_some(&mut stdout, &mut out_buf) => {
                match n {
                    Some(n) => {
                        let text = decode(&mut out_carry, &out_buf[..n]);
                        ctx.out.stream(StreamName::Stdout, &text).await;
                    }
                    None => stdout = None,
                }
            }
            n = read_some(&mut stderr, &mut err_buf) => {
                match n {
                    Some(n) => {
                        let text = decode(&mut err_carry, &err_buf[..n]);
                        ctx.out.stream(StreamName::Stderr, &text).await;
                    }
                    None => stderr = None,
                }
            }
            _ = tick.tick() => ctx.out.flush_stream().await,
            _ = cancel.cancelled() => return Err(KernelError::Interrupted),
            _ = &mut deadline => return Err(KernelError::CommandTimeout { secs: timeout.as_secs() }),
        }
    }
    for (carry, name) in [
        (out_carry, StreamName::Stdout),
        (err_carry, StreamName::Stderr),
    ] {
        if !carry.is_empty() {
            ctx.out.stream(name, &String::from_utf8_lossy(&carry)).await;
        }
    }
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| KernelError::Io(e.to_string()))?,
        _ = cancel.cancelled() => return Err(KernelError::Interrupted),
        _ = &mut deadline => return Err(KernelError::CommandTimeout { secs: timeout.as_secs() }),
    };
    ctx.out.flush_stream().await;
    if status.success() {
        Ok(())
    } else {
        Err(KernelError::CommandFailed {
            status: describe_status(status),
        })
    }
}

/// Reads from an optional pipe; `None` at end of file or on error.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(p) => match p.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// Decodes UTF-8, keeping a sequence split across reads for the next one.
fn decode(carry: &mut Vec<u8>, bytes: &[u8]) -> String {
    carry.extend_from_slice(bytes);
    let valid_up_to = match std::str::from_utf8(carry) {
        Ok(_) => carry.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => {
            // Truly invalid bytes: replace them rather than stall.
            let text = String::from_utf8_lossy(carry).into_owned();
            carry.clear();
            return text;
        }
    };
    let rest = carry.split_off(valid_up_to);
    String::from_utf8(std::mem::replace(carry, rest)).unwrap_or_default()
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "an unknown status".into(),
    }
}

/// SIGTERM to the group, then SIGKILL if it lingers.
async fn kill_group(pgid: i32, child: &mut tokio::process::Child) {
    let pid = Pid::from_raw(pgid);
    let _ = killpg(pid, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Grandchildren may outlive the leader; make sure the group is gone.
    let _ = killpg(pid, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn split_utf8_sequences_are_carried_not_broken() {
        let mut carry = Vec::new();
        let bytes = "né".as_bytes();
        assert_eq!(decode(&mut carry, &bytes[..2]), "n");
        assert_eq!(decode(&mut carry, &bytes[2..]), "é");
        assert!(carry.is_empty());
    }
}
