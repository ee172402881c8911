//! `skillctl`: talk to a running skillkernel from the terminal.
//!
//! Connected mode: it reads a connection file (`--existing FILE`, or the
//! newest skillkernel one in the Jupyter runtime directory) and speaks the
//! Jupyter protocol to the kernel like any front end.

mod control;
mod mcp_servers;
mod model;
mod request;
mod sandbox;
mod skill;
mod status_text;
mod table;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mcp_servers::McpCommand;
use serde_json::json;
use skillctl::render::{bundle_text, TerminalOutput};
use skillctl::{ExecuteOptions, KernelClient, Target};
use skillkernel_protocol::paths::{jupyter_runtime_dir, newest_connection_file};
use skillkernel_protocol::{ConnectionInfo, RequestType};

#[derive(Debug, Parser)]
#[command(
    name = "skillctl",
    version,
    about = "Command-line client for a running skillkernel"
)]
struct Cli {
    /// Connection file of the kernel (a path, or a file name in the Jupyter
    /// runtime directory). Default: the newest skillkernel connection file.
    #[arg(long, global = true, value_name = "FILE")]
    existing: Option<PathBuf>,

    /// Seconds to wait for the kernel to answer.
    #[arg(long, global = true, default_value_t = 10)]
    connect_timeout: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a cell and stream its output; exits 1 if the cell fails.
    Exec {
        /// The cell: a prompt, `%magic` lines or `!command`s.
        code: String,
        /// Do not record the cell in history.
        #[arg(long)]
        no_history: bool,
    },
    /// Send a prompt to the session's model and stream the answer.
    Chat {
        /// The prompt (plain text; use `exec` for magics and commands).
        prompt: String,
    },
    /// List, pull, inspect, remove and choose the kernel's models.
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
        /// Print the raw model_reply content as JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// List, search, inspect, run, validate and reload the kernel's skills.
    Skill {
        #[command(subcommand)]
        command: skill::SkillCommand,
        /// Print the raw skill_reply content as JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// What model calls used and cost: today, the last days, by model and
    /// by skill, and the budgets.
    Usage {
        /// Report over the last N days (default 7).
        #[arg(long)]
        days: Option<u32>,
        /// Print the raw model_reply content as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The sandbox: which layers the kernel's host enforces, sessions.
    Sandbox {
        #[command(subcommand)]
        command: sandbox::SandboxCommand,
        /// Print the raw sandbox_reply content as JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Health, kernel and session status. Exit code: 0 healthy, 1 degraded,
    /// 2 unhealthy, 3 unknown (no kernel, no answer, an error).
    Status {
        /// Print the raw status_reply content as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Interrupt the running cell (interrupt_request on control).
    Interrupt {
        /// Print the raw interrupt_reply content as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop the kernel (shutdown_request on control).
    Shutdown {
        /// Ask for a restart: the kernel stops and says so in its reply; the
        /// process that started it (Jupyter, a service manager) restarts it.
        #[arg(long)]
        restart: bool,
        /// Print the raw shutdown_reply content as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the daemon's skills as an MCP server on stdin/stdout, for an
    /// agent that launches MCP servers (Claude Desktop or Code, VS Code,
    /// Cursor); `servers` and `tools` list the MCP servers the daemon
    /// uses. See docs/mcp.md.
    Mcp {
        #[command(subcommand)]
        command: Option<mcp_servers::McpCommand>,
    },
    /// Show the kernel's kernel_info.
    Info {
        /// Print the raw kernel_info_reply content as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn resolve_connection_file(existing: Option<PathBuf>) -> Result<PathBuf, String> {
    let runtime = jupyter_runtime_dir();
    match existing {
        Some(path) if path.exists() => Ok(path),
        Some(path) => {
            let in_runtime = runtime.join(&path);
            if in_runtime.exists() {
                Ok(in_runtime)
            } else {
                Err(format!("connection file {} not found", path.display()))
            }
        }
        None => newest_connection_file(&runtime, "skillkernel").ok_or_else(|| {
            format!(
                "no skillkernel connection file in {}; start one with `skillkernel start` \
                 or pass --existing FILE",
                runtime.display()
            )
        }),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `status` is a monitoring check: "could not tell" has its own code.
    let error_code = match cli.command {
        Command::Status { .. } => control::EXIT_UNKNOWN,
        _ => 2,
    };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skillctl: {e}");
            ExitCode::from(error_code)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let path = resolve_connection_file(cli.existing)?;
    let info = ConnectionInfo::read(&path).map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(cli.connect_timeout);
    let mut client = tokio::time::timeout(timeout, KernelClient::connect(&info))
        .await
        .map_err(|_| format!("kernel at {} did not accept a connection", path.display()))?
        .map_err(|e| e.to_string())?;
    match cli.command {
        Command::Info { json: raw } => {
            let reply = client
                .request(
                    Target::Shell,
                    RequestType::KernelInfo.request(),
                    json!({}),
                    timeout,
                )
                .await
                .map_err(|e| e.to_string())?;
            let c = &reply.content;
            if raw {
                println!("{}", serde_json::to_string_pretty(c).unwrap_or_default());
            } else {
                println!(
                    "{} {} (protocol {})",
                    c["implementation"].as_str().unwrap_or("?"),
                    c["implementation_version"].as_str().unwrap_or("?"),
                    c["protocol_version"].as_str().unwrap_or("?")
                );
                println!(
                    "language: {}",
                    c["language_info"]["name"].as_str().unwrap_or("?")
                );
                println!("connection file: {}", path.display());
                println!("{}", c["banner"].as_str().unwrap_or(""));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Chat { prompt } => {
            let first = prompt.trim_start().chars().next();
            if matches!(first, Some('%') | Some('!')) {
                return Err("a prompt cannot start with `%` or `!`; use `skillctl exec` for magics and commands".into());
            }
            run_cell(&mut client, &prompt, true, timeout).await
        }
        Command::Model { command, json } => model::run(&mut client, command, json, timeout).await,
        Command::Usage { days, json } => {
            let command = model::ModelCommand::Usage { days };
            model::run(&mut client, command, json, timeout).await
        }
        Command::Skill { command, json } => skill::run(&mut client, command, json, timeout).await,
        Command::Sandbox { command, json } => {
            sandbox::run(&mut client, command, json, timeout).await
        }
        Command::Status { json } => control::status(&mut client, json, timeout).await,
        Command::Interrupt { json } => control::interrupt(&mut client, json, timeout).await,
        Command::Shutdown { restart, json } => {
            control::shutdown(&mut client, restart, json, timeout).await
        }
        Command::Mcp {
            command: Some(command @ (McpCommand::Servers { .. } | McpCommand::Tools { .. })),
        } => mcp_servers::run(&mut client, command, timeout).await,
        Command::Mcp { .. } => {
            client
                .wait_ready(timeout)
                .await
                .map_err(|e| e.to_string())?;
            skillctl::mcp::bridge(client, tokio::io::stdin(), tokio::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec { code, no_history } => {
            run_cell(&mut client, &code, !no_history, timeout).await
        }
    }
}

/// Ctrl-C interrupts the kernel's work rather than killing skillctl, until
/// the returned task is aborted.
fn interrupt_on_ctrl_c(client: &KernelClient) -> tokio::task::JoinHandle<()> {
    let interrupter = client.interrupter();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupter.interrupt().await;
        }
    })
}

/// Runs one cell, streaming its output; exit status 1 when it fails.
async fn run_cell(
    client: &mut KernelClient,
    code: &str,
    store_history: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    client
        .wait_ready(timeout)
        .await
        .map_err(|e| e.to_string())?;
    let ctrl_c = interrupt_on_ctrl_c(client);
    let options = ExecuteOptions {
        store_history,
        metadata: trace_context_from_env(),
        ..ExecuteOptions::default()
    };
    let mut out = TerminalOutput::default();
    let outcome = client.execute(code, &options, &mut out).await;
    out.finish();
    ctrl_c.abort();
    let outcome = outcome.map_err(|e| e.to_string())?;
    if let Some(payloads) = outcome.reply.content["payload"].as_array() {
        for p in payloads.iter().filter(|p| p["source"] == "page") {
            if let Some(text) = bundle_text(&p["data"]) {
                println!("{}", text.trim_end());
            }
        }
    }
    match outcome.status() {
        "ok" => Ok(ExitCode::SUCCESS),
        "error" if !out.saw_error => {
            let c = &outcome.reply.content;
            eprintln!(
                "{}: {}",
                c["ename"].as_str().unwrap_or("Error"),
                c["evalue"].as_str().unwrap_or("")
            );
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(ExitCode::FAILURE),
    }
}

/// `TRACEPARENT` / `TRACESTATE` from the environment (OpenTelemetry's
/// environment carrier), passed on in the request's metadata so the
/// kernel's spans join the caller's trace.
fn trace_context_from_env() -> serde_json::Map<String, serde_json::Value> {
    [("TRACEPARENT", "traceparent"), ("TRACESTATE", "tracestate")]
        .into_iter()
        .filter_map(|(var, key)| {
            let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
            Some((key.to_owned(), serde_json::Value::String(value)))
        })
        .collect()
}
