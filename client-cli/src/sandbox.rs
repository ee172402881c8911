//! `skillctl sandbox …`: the kernel's sandbox through `sandbox_request`.
//!
//! `status` prints each layer (active on the kernel's host, or why not),
//! the `!command` settings and the live sessions; its exit status is 0
//! when every layer is active, 1 when some is not. `end NAME` ends a
//! session skill's process.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use skillctl::{KernelClient, Quiet};
use skillkernel_protocol::content::{
    ExtensionRequest, Reply, SandboxReply, SandboxRequest, SandboxStatus,
};

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
    let request = match &command {
        SandboxCommand::Status => SandboxRequest::Status,
        SandboxCommand::End { name } => SandboxRequest::End { name: name.clone() },
    };
    let reply = crate::request::send(client, &request, timeout, timeout, &mut Quiet).await?;
    if raw {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    }
    let answer = match crate::request::parse::<SandboxRequest>(&reply)? {
        Reply::Ok(answer) => answer,
        Reply::Error(e) => return Err(format!("{}: {}", e.ename, e.evalue)),
    };
    match (command, answer) {
        (SandboxCommand::Status, SandboxReply::Status(status)) => {
            if !raw {
                print_status(&status);
            }
            Ok(if status.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        (SandboxCommand::End { name }, SandboxReply::End(end)) => {
            if !end.ended {
                return Err(format!("no session named `{name}`"));
            }
            if !raw {
                println!("session `{name}` ended");
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!(
            "the kernel's {} does not answer this request",
            SandboxRequest::TYPE.reply()
        )),
    }
}

fn print_status(c: &SandboxStatus) {
    let rows: Vec<Vec<String>> = c
        .layers
        .iter()
        .map(|l| {
            let active = if l.active { "yes" } else { "NO" };
            vec![l.name.clone(), active.to_owned(), l.detail.clone()]
        })
        .collect();
    print_table(&["layer", "active", "detail"], &rows);
    if let Some(e) = &c.probe_error {
        println!("host probe failed: {e}");
    }
    let cfg = &c.config;
    println!();
    println!(
        "kernel {} ({}); workspace {}",
        c.kernel_release.as_deref().unwrap_or(""),
        c.arch.as_deref().unwrap_or(""),
        c.workspace
    );
    println!(
        "!command network: {}; require Landlock: {}; output cap: {} bytes",
        if let Some(hosts) = cfg["network"].as_array() {
            let hosts: Vec<&str> = hosts.iter().filter_map(|h| h.as_str()).collect();
            format!("by host: {}", hosts.join(", "))
        } else if cfg["network"] == true {
            "allowed".to_string()
        } else {
            "denied".to_string()
        },
        text(&cfg["require_landlock"]),
        text(&cfg["max_output_bytes"])
    );
    println!(
        "audit log: {}",
        c.audit_log.as_deref().unwrap_or("the daemon log only")
    );
    if !c.toolchains.is_empty() {
        println!("home toolchains readable: {}", c.toolchains.join(", "));
    }
    if !c.deny.is_empty() {
        println!("kept shut whatever is granted: {}", c.deny.join(", "));
    }
    let sessions: Vec<Vec<String>> = c
        .sessions
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.skill.clone(),
                s.pid.to_string(),
                s.exchanges.to_string(),
                s.idle_secs.to_string(),
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
