//! `skillkernel`: the daemon binary.
//!
//! * `skillkernel start [-f FILE]` serves one kernel in the foreground, as
//!   Jupyter launches it through the kernelspec's `{connection_file}`.
//!   With `--daemon` it detaches (double fork, PID file) and the launcher
//!   exits once the kernel serves.
//!   With `--response-address` (and `--kernel-id`, `--public-key`,
//!   `--port-range`) it is launched by Jupyter Enterprise Gateway instead:
//!   see the `gateway` module.
//! * `skillkernel stop|status|reload|dump` act on a running daemon
//!   through its PID file and signals.
//! * `skillkernel install [--user|--sys-prefix|--prefix P]` writes the
//!   kernelspec so Jupyter front ends can start it.
//! * `skillkernel config [--config F] [--check]` shows or checks the
//!   effective configuration.
//! * `skillkernel sandbox-exec [--policy-… ] -- PROG ARGS…` confines one
//!   program and executes it (the daemon re-executes itself this way for
//!   commands and skills); `--probe` reports the host's sandbox support.
//!   The helper lives in the sandbox crate (`skillkernel_sandbox::helper`),
//!   beside the parent side it answers to; this binary only dispatches.
//!
//! This binary owns process concerns only — arguments, paths, logging,
//! signals, the runtime — and hands the sockets to the `kernel` crate.
//! It must never handle a Jupyter message itself.

mod cli;
mod config;
mod config_command;
mod connection;
mod daemonize;
mod dump;
mod gateway;
mod install;
mod logging;
mod manage;
mod mcp_endpoint;
mod metrics_http;
mod pidfile;
mod redact;
mod reload;
mod signals;
mod start;
mod traces;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Start(args) => start::run(*args).map_err(Into::into),
        cli::Command::Install(args) => install::run(args),
        cli::Command::Manage(command) => manage::run(command).map_err(Into::into),
        cli::Command::Config(args) => config_command::run(args).map_err(Into::into),
        cli::Command::SkillDigest { path, digest } => {
            skillkernel_skills::trust::digest::manifest(&path)
                .map(|m| {
                    if digest {
                        println!("{}", m.digest());
                    } else {
                        print!("{}", m.text());
                    }
                    ExitCode::SUCCESS
                })
                .map_err(Into::into)
        }
        // Before any runtime or thread exists: the helper must stay single-threaded.
        cli::Command::SandboxExec(args) => return skillkernel_sandbox::helper::run(args),
    };
    let result: Result<ExitCode, Box<dyn std::error::Error>> = result;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skillkernel: {e}");
            ExitCode::FAILURE
        }
    }
}
