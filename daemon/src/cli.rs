//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "skillkernel",
    version,
    about = "A Jupyter kernel for LLM skills, prompts and commands"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a kernel in the foreground.
    Start(StartArgs),
    /// Install the `skillkernel` kernelspec for Jupyter.
    Install(InstallArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Connection file: read when it exists (as Jupyter writes it),
    /// otherwise created there. Without it, one is created in the Jupyter
    /// runtime directory and its path printed.
    #[arg(short = 'f', long = "connection-file", value_name = "FILE")]
    pub connection_file: Option<PathBuf>,

    /// Address to listen on when creating a connection file.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: String,

    /// Log filter (`info`, `debug`, `skillkernel_kernel=trace`, …).
    #[arg(long, env = "SKILLKERNEL_LOG", default_value = "info")]
    pub log_level: String,

    /// Log line format on stderr.
    #[arg(
        long,
        value_enum,
        env = "SKILLKERNEL_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Seconds a `!command` may run before it is killed.
    #[arg(long, env = "SKILLKERNEL_COMMAND_TIMEOUT", default_value_t = 600)]
    pub command_timeout: u64,

    /// Largest inbound message accepted, in bytes; larger ones are dropped.
    #[arg(long, env = "SKILLKERNEL_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Directory of GGUF models for embedded inference. Default:
    /// ~/.local/share/skillkernel/models.
    #[arg(long, env = "SKILLKERNEL_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,

    /// The model prompt cells use until `%model use` picks another.
    #[arg(long, env = "SKILLKERNEL_MODEL", default_value = "smollm2-135m")]
    pub model: String,

    /// System message that opens each conversation ("" for none).
    #[arg(
        long,
        env = "SKILLKERNEL_SYSTEM_PROMPT",
        default_value = "You are a helpful assistant."
    )]
    pub system_prompt: String,

    /// Most tokens one answer may have.
    #[arg(long, env = "SKILLKERNEL_MAX_TOKENS", default_value_t = 512)]
    pub max_tokens: u32,

    /// Sampling temperature for prompt cells (0 = greedy).
    #[arg(long, env = "SKILLKERNEL_TEMPERATURE", default_value_t = 0.0)]
    pub temperature: f32,

    /// Repeat penalty over the last 64 tokens (1.0 = off).
    #[arg(long, env = "SKILLKERNEL_REPEAT_PENALTY", default_value_t = 1.1)]
    pub repeat_penalty: f32,

    /// Tokio worker threads for IO (inference uses its own threads).
    #[arg(long, env = "SKILLKERNEL_IO_THREADS", default_value_t = 2)]
    pub io_threads: usize,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct InstallArgs {
    /// Install for the current user (the default).
    #[arg(long)]
    pub user: bool,
    /// Install into the active Python environment (`sys.prefix`).
    #[arg(long)]
    pub sys_prefix: bool,
    /// Install under PREFIX/share/jupyter/kernels.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<PathBuf>,
}
