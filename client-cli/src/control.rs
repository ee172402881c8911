//! `skillctl status | shutdown | interrupt`: requests on the control
//! channel, which the kernel answers even while a cell runs on shell — so
//! a health check or an interrupt never waits behind a long cell.
//!
//! `status` exits with the monitoring-plugin convention (Nagios, Icinga,
//! Sensu): 0 healthy, 1 degraded, 2 unhealthy, 3 unknown (no kernel, no
//! answer, an error reply), so it can serve as a check as it is.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use skillctl::{KernelClient, Target};
use skillkernel_protocol::content::{
    ExtensionRequest, HealthStatus, Reply, ShutdownRequest, StatusRequest,
};
use skillkernel_protocol::RequestType;

/// `skillctl status` exit codes.
pub const EXIT_HEALTHY: u8 = 0;
pub const EXIT_DEGRADED: u8 = 1;
pub const EXIT_UNHEALTHY: u8 = 2;
pub const EXIT_UNKNOWN: u8 = 3;

/// Sends `msg_type` on control and waits for its reply's content.
async fn ask(
    client: &mut KernelClient,
    msg_type: &str,
    content: Value,
    timeout: Duration,
) -> Result<Value, String> {
    let reply = client
        .request(Target::Control, msg_type, content, timeout)
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply.content)
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The error of a `status: "error"` reply, as one line.
fn error_line(c: &Value) -> String {
    format!(
        "{}: {}",
        c["ename"].as_str().unwrap_or("Error"),
        c["evalue"].as_str().unwrap_or("")
    )
}

/// `skillctl status [--json]`.
pub async fn status(
    client: &mut KernelClient,
    json_out: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let c = ask(
        client,
        StatusRequest::TYPE.request(),
        json!(StatusRequest {}),
        timeout,
    )
    .await?;
    let report = match crate::request::parse::<StatusRequest>(&c)? {
        Reply::Ok(report) => report,
        Reply::Error(e) => return Err(format!("{}: {}", e.ename, e.evalue)),
    };
    if json_out {
        print_json(&c);
    } else {
        print!("{}", crate::status_text::render(&c));
    }
    Ok(ExitCode::from(health_exit_code(report.health.status)))
}

/// The exit code for a health status.
pub fn health_exit_code(status: HealthStatus) -> u8 {
    match status {
        HealthStatus::Healthy => EXIT_HEALTHY,
        HealthStatus::Degraded => EXIT_DEGRADED,
        HealthStatus::Unhealthy => EXIT_UNHEALTHY,
    }
}

/// `skillctl shutdown [--restart] [--json]`.
pub async fn shutdown(
    client: &mut KernelClient,
    restart: bool,
    json_out: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let c = ask(
        client,
        RequestType::Shutdown.request(),
        json!(ShutdownRequest { restart }),
        timeout,
    )
    .await?;
    if json_out {
        print_json(&c);
    }
    if c["status"] != "ok" {
        eprintln!("{}", error_line(&c));
        return Ok(ExitCode::FAILURE);
    }
    if !json_out {
        let restart = c["restart"].as_bool().unwrap_or(restart);
        println!("shutdown_reply: ok (restart: {restart})");
    }
    Ok(ExitCode::SUCCESS)
}

/// `skillctl interrupt [--json]`.
pub async fn interrupt(
    client: &mut KernelClient,
    json_out: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let c = ask(client, RequestType::Interrupt.request(), json!({}), timeout).await?;
    if json_out {
        print_json(&c);
    }
    if c["status"] != "ok" {
        eprintln!("{}", error_line(&c));
        return Ok(ExitCode::FAILURE);
    }
    if !json_out {
        println!("interrupt_reply: ok");
    }
    Ok(ExitCode::SUCCESS)
}
