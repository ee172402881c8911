//! `skillctl sandbox …`: the kernel's sandbox through `sandbox_request`.
//!
//! `status` prints each layer (active on the kernel's host, or why not),
//! the `!command` settings and the live sessions; its exit status is 0
//! when every layer is active, 1 when some is not. `end NAME` ends a
//! session skill's process.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use skillctl::{KernelClient, Quiet};

use crate::table::{print_table, text};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Which sandbox layers the kernel's host enforces, and why any is not;
    /// exit status 1 when one is missing.
    Status,
    /// End a session skill's process (its state is lost).
    End { name: String },
}

pub async fn run(
    client: &mut KernelClient,
    command: SandboxCommand,
    raw: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let content = match &command {
        SandboxCommand::Status => json!({"action": "status"}),
        SandboxCommand::End { name } => json!({"action": "end", "name": name}),
    };
    let reply = crate::request::send(
        client,
        "sandbox_request",
        content,
        timeout,
        timeout,
        &mut Quiet,
    )
    .await?;
    if raw {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    }
    if reply["status"] != "ok" {
        return Err(format!(
            "{}: {}",
            text(&reply["ename"]),
            text(&reply["evalue"])
        ));
    }
    match command {
        SandboxCommand::Status => {
            if !raw {
                print_status(&reply);
            }
            Ok(if reply["complete"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        SandboxCommand::End { name } => {
            if reply["ended"] != true {
                return Err(format!("no session named `{name}`"));
            }
            if !raw {
                println!("session `{name}` ended");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(c: &Value) {
    let rows: Vec<Vec<String>> = c["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let active = if l["active"] == true { "yes" } else { "NO" };
            vec![text(&l["name"]), active.to_owned(), text(&l["detail"])]
        })
        .collect();
    print_table(&["layer", "active", "detail"], &rows);
    if let Some(e) = c["probe_error"].as_str() {
        println!("host probe failed: {e}");
    }
    let cfg = &c["config"];
    println!();
    println!(
        "kernel {} ({}); workspace {}",
        text(&c["kernel_release"]),
        text(&c["arch"]),
        text(&c["workspace"])
    );
    println!(
        "!command network: {}; require Landlock: {}; output cap: {} bytes",
        if cfg["network"] == true {
            "allowed"
        } else {
            "denied"
        },
        text(&cfg["require_landlock"]),
        text(&cfg["max_output_bytes"])
    );
    println!(
        "audit log: {}",
        c["audit_log"].as_str().unwrap_or("the daemon log only")
    );
    let sessions: Vec<Vec<String>> = c["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(&s["name"]),
                text(&s["skill"]),
                text(&s["pid"]),
                text(&s["exchanges"]),
                text(&s["idle_secs"]),
            ]
        })
        .collect();
    if !sessions.is_empty() {
        println!();
        print_table(
            &["session", "skill", "pid", "exchanges", "idle s"],
            &sessions,
        );
    }
}
