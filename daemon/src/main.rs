//! `skillkernel`: the daemon binary.
//!
//! * `skillkernel start [-f FILE]` serves one kernel in the foreground, as
//!   Jupyter launches it through the kernelspec's `{connection_file}`.
//! * `skillkernel install [--user|--sys-prefix|--prefix P]` writes the
//!   kernelspec so Jupyter front ends can start it.
//! * `skillkernel config [--config F] [--check]` shows or checks the
//!   effective configuration.
//!
//! This binary owns process concerns only — arguments, paths, logging,
//! signals, the runtime — and hands the sockets to the `kernel` crate.
//! It must never handle a Jupyter message itself.

mod cli;
mod config;
mod config_command;
mod install;
mod logging;
mod redact;
mod start;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Start(args) => start::run(*args).map_err(Into::into),
        cli::Command::Install(args) => install::run(args),
        cli::Command::Config(args) => config_command::run(args).map_err(Into::into),
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
