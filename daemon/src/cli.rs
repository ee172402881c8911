//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};

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
    Start(Box<StartArgs>),
    /// Install the `skillkernel` kernelspec for Jupyter.
    Install(InstallArgs),
    #[command(flatten)]
    Manage(ManageCommand),
    /// Print the effective configuration (files, then environment), secrets
    /// redacted; with --check, only validate it.
    Config(ConfigArgs),
    /// Print a skill folder's digest manifest (`HASH  PATH` lines, what a
    /// `skill.minisig` signs); with --digest, only the skill's digest.
    SkillDigest {
        /// The skill's folder (or a loose workflow file).
        path: std::path::PathBuf,
        #[arg(long)]
        digest: bool,
    },
    /// Run one program confined (rlimits, no_new_privs, Landlock, seccomp,
    /// scrubbed environment); the daemon re-executes itself with this. With
    /// --probe, print which sandbox layers this host supports, as JSON.
    SandboxExec(skillkernel_sandbox::helper::ExecArgs),
}

/// Commands that act on a running daemon through its PID file.
#[derive(Debug, Subcommand)]
pub enum ManageCommand {
    /// Stop a running daemon (SIGTERM) and wait until it has exited.
    Stop {
        #[command(flatten)]
        args: ManageArgs,
        /// Seconds to wait for the shutdown to finish.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Say whether a daemon runs (exit 0), is dead with a stale PID file
    /// (1) or not running (3).
    Status(ManageArgs),
    /// Make a running daemon re-read its configuration (SIGUSR1).
    Reload(ManageArgs),
    /// Make a running daemon write a state dump (SIGUSR2); prints its path.
    Dump {
        #[command(flatten)]
        args: ManageArgs,
        /// Seconds to wait for the dump file.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

/// How to find a running daemon: as `start` found its PID file.
#[derive(Debug, Clone, Args)]
pub struct ManageArgs {
    /// The daemon's PID file. Default: `[daemon] pid_file`, else
    /// `<state-dir>/skillkernel.pid`.
    #[arg(long, env = "SKILLKERNEL_PID_FILE", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// The configuration file the daemon was started with.
    #[arg(long, env = "SKILLKERNEL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The daemon's state directory (where dumps are written).
    #[arg(long, env = "SKILLKERNEL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Connection file: read when it exists (as Jupyter writes it),
    /// otherwise created there. Without it, one is created in the Jupyter
    /// runtime directory and its path printed.
    #[arg(short = 'f', long = "connection-file", value_name = "FILE")]
    pub connection_file: Option<PathBuf>,

    /// Address to listen on when creating a connection file. Default
    /// 127.0.0.1; in an Enterprise Gateway launch 0.0.0.0, since the
    /// gateway connects from its own host.
    #[arg(long)]
    pub ip: Option<String>,

    /// Detach and run as a daemon: double-fork, new session, stdio to the
    /// log or /dev/null, PID file held under a lock. The launching process
    /// exits 0 once the kernel serves, non-zero with the reason otherwise.
    #[arg(long)]
    pub daemon: bool,

    /// PID file, locked for the daemon's whole life (`[daemon] pid_file`).
    /// Default in `--daemon` mode: `<state-dir>/skillkernel.pid`.
    #[arg(long, env = "SKILLKERNEL_PID_FILE", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Directory for log files with rotation (`[log] dir`); unset: stderr.
    #[arg(long, env = "SKILLKERNEL_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Persisted session to continue (`[daemon] session`). Default: the
    /// connection file's stem with `-f`, else `default`.
    #[arg(long, env = "SKILLKERNEL_SESSION")]
    pub session: Option<String>,

    /// Log filter (`info`, `debug`, `skillkernel_kernel=trace`, …);
    /// `[log] level`, default `info`.
    #[arg(long, env = "SKILLKERNEL_LOG")]
    pub log_level: Option<String>,

    /// Log line format (`[log] format`, default text).
    #[arg(long, value_enum, env = "SKILLKERNEL_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Seconds a `!command` may run before it is killed
    /// (`[limits] command_timeout_secs`, default 600).
    #[arg(long, env = "SKILLKERNEL_COMMAND_TIMEOUT")]
    pub command_timeout: Option<u64>,

    /// Largest inbound message accepted, in bytes; larger ones are dropped
    /// (`[limits] max_message_bytes`, default 64 MiB).
    #[arg(long, env = "SKILLKERNEL_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,

    /// Configuration file, read after the system file
    /// (/etc/skillkernel/config.toml) and the user file
    /// (~/.config/skillkernel/config.toml). See docs/operations.md.
    #[arg(long, env = "SKILLKERNEL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the kernel keeps state (the response cache). Default:
    /// ~/.local/state/skillkernel.
    #[arg(long, env = "SKILLKERNEL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Directory of GGUF models for embedded inference. Default:
    /// ~/.local/share/skillkernel/models. Overrides `[models] dir`.
    #[arg(long, env = "SKILLKERNEL_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,

    /// What prompt cells use until `%model use` picks another: a model,
    /// `name@backend` or a profile (cheap, balanced, premium). Default:
    /// smollm2-135m. Overrides `[models] default`.
    #[arg(long, env = "SKILLKERNEL_MODEL")]
    pub model: Option<String>,

    /// System message that opens each conversation ("" for none).
    /// Default: "You are a helpful assistant."
    #[arg(long, env = "SKILLKERNEL_SYSTEM_PROMPT")]
    pub system_prompt: Option<String>,

    /// Most tokens one answer may have (default 512).
    #[arg(long, env = "SKILLKERNEL_MAX_TOKENS")]
    pub max_tokens: Option<u32>,

    /// Sampling temperature for prompt cells (default 0 = greedy).
    #[arg(long, env = "SKILLKERNEL_TEMPERATURE")]
    pub temperature: Option<f32>,

    /// Repeat penalty over the last 64 tokens (default 1.2; 1.0 = off).
    #[arg(long, env = "SKILLKERNEL_REPEAT_PENALTY")]
    pub repeat_penalty: Option<f32>,

    /// Ollama server address. Default: `[models.ollama] host`, else
    /// OLLAMA_HOST, else 127.0.0.1:11434.
    #[arg(long, value_name = "URL")]
    pub ollama_host: Option<String>,

    /// Inference threads of the embedded backend (default: one per core).
    #[arg(long, env = "SKILLKERNEL_THREADS")]
    pub threads: Option<usize>,

    /// Tokio worker threads for IO (inference uses its own threads).
    #[arg(long, env = "SKILLKERNEL_IO_THREADS", default_value_t = 2)]
    pub io_threads: usize,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// Enterprise Gateway's launcher protocol, in place of a connection file:
/// what its remote process proxies and `gateway_provisioners` put in the
/// kernelspec's argv (`{kernel_id}`, `{response_address}`,
/// `{public_key}`, `{port_range}`), or in a kernel container's
/// environment. See docs/operations.md.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// The kernel's id, as the gateway names it.
    #[arg(long, env = "KERNEL_ID", value_name = "ID")]
    pub kernel_id: Option<String>,
    /// Where to send the connection information (HOST:PORT); its presence
    /// makes this a gateway launch.
    #[arg(long, env = "RESPONSE_ADDRESS", value_name = "HOST:PORT")]
    pub response_address: Option<String>,
    /// The gateway's RSA public key (base64), which seals the connection
    /// information.
    #[arg(long, env = "PUBLIC_KEY", value_name = "KEY")]
    pub public_key: Option<String>,
    /// Ports the kernel may listen on, LOWER..UPPER (0..0: any).
    #[arg(long, env = "PORT_RANGE", value_name = "LOWER..UPPER")]
    pub port_range: Option<String>,
    /// Seconds without a word from the gateway on the communication port
    /// (it probes every few seconds) after which the kernel takes it for
    /// gone and shuts down, exiting non-zero. 0: never.
    #[arg(
        long,
        env = "SKILLKERNEL_GATEWAY_ORPHAN_TIMEOUT",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub gateway_orphan_timeout: u64,
}

impl StartArgs {
    /// Lays these options and environment variables over `config` (clap
    /// has already folded `SKILLKERNEL_*` variables into them).
    pub fn apply_to(&self, config: &mut Config) {
        let m = &mut config.models;
        if let Some(dir) = &self.model_dir {
            m.dir = Some(dir.clone());
        }
        if let Some(model) = &self.model {
            m.default = model.clone();
        }
        if let Some(prompt) = &self.system_prompt {
            m.system_prompt = prompt.clone();
        }
        if let Some(n) = self.max_tokens {
            m.generation.max_tokens = n;
        }
        if let Some(t) = self.temperature {
            m.generation.temperature = t;
        }
        if let Some(p) = self.repeat_penalty {
            m.generation.repeat_penalty = p;
        }
        if let Some(host) = &self.ollama_host {
            m.ollama.host = Some(host.clone());
        }
        if let Some(threads) = self.threads {
            m.candle.threads = threads;
        }
        if let Some(dir) = &self.state_dir {
            config.daemon.state_dir = Some(dir.clone());
        }
        if let Some(file) = &self.pid_file {
            config.daemon.pid_file = Some(file.clone());
        }
        if let Some(session) = &self.session {
            config.daemon.session = Some(session.clone());
        }
        if let Some(level) = &self.log_level {
            config.log.level = level.clone();
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if let Some(dir) = &self.log_dir {
            config.log.dir = Some(dir.clone());
        }
        if let Some(secs) = self.command_timeout {
            config.limits.command_timeout_secs = secs;
        }
        if let Some(bytes) = self.max_message_bytes {
            config.limits.max_message_bytes = bytes;
        }
    }
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

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file read after the system and user files, as for
    /// `skillkernel start --config`.
    #[arg(long, env = "SKILLKERNEL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only validate: list the files read and exit non-zero, naming the file
    /// and key, when one is invalid.
    #[arg(long)]
    pub check: bool,
    /// Print JSON instead of TOML.
    #[arg(long, conflicts_with = "check")]
    pub json: bool,
}
