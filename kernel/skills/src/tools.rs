//! What a skill's model may call: the tools a skill declares, loaded into
//! a [`Toolbox`], and the limits of the loop that runs them.
//!
//! * another skill (`tools: [{skill: NAME}]` in a native manifest): its
//!   parameters and `input` are the tool's arguments;
//! * a script of an Agent Skill (`scripts/…` in its folder), run in the
//!   sandbox with the arguments the model gives, in the working directory;
//! * `read_reference`: a file of an Agent Skill's `references/`, read on
//!   demand (progressive disclosure) up to [`REFERENCE_BYTES`];
//! * the tools of a configured MCP server (`tools: [{mcp: NAME}]`, or
//!   `mcp__NAME` / `mcp__NAME__TOOL` in an Agent Skill's `allowed-tools`).
//!
//! The loop itself is in `exec/agent.rs`.

use std::path::PathBuf;
use std::time::Duration;

/// The steps (model calls) a loop takes at most, unless the skill says.
pub const DEFAULT_MAX_STEPS: u32 = 8;
/// The most a reference read returns; longer files are cut with a note.
pub const REFERENCE_BYTES: usize = 16 * 1024;
/// The most of a tool's result the model is given.
pub const RESULT_BYTES: usize = 8 * 1024;
/// How long one tool call may take unless the skill says.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A skill's tools and the limits of its loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Toolbox {
    pub tools: Vec<ToolSource>,
    /// Model calls at most; past it the loop stops and keeps what it has.
    pub max_steps: u32,
    /// One tool call's time limit.
    pub tool_timeout: Duration,
    /// The first step must call a tool (`tool_choice: required`): for a
    /// skill whose answer always needs one, and small models that would
    /// rather guess.
    pub first_call_required: bool,
}

impl Default for Toolbox {
    fn default() -> Self {
        Toolbox {
            tools: Vec::new(),
            max_steps: DEFAULT_MAX_STEPS,
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
            first_call_required: false,
        }
    }
}

impl Toolbox {
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The skills this toolbox calls, by name.
    pub fn skills(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().filter_map(|t| match t {
            ToolSource::Skill { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// One tool.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolSource {
    /// Another skill, run with the model's arguments.
    Skill {
        name: String,
        /// What the model is told it does; default: the skill's description.
        description: Option<String>,
    },
    /// A program in the skill's folder, run in the sandbox.
    Script {
        /// The tool's name: the file's stem, in the characters every API
        /// accepts.
        name: String,
        /// Relative to the skill's folder (`scripts/count_words.py`).
        path: PathBuf,
    },
    /// Reads one of `files` (relative to the skill's folder).
    References { files: Vec<PathBuf> },
    /// Tools of a configured MCP server (see [`crate::external`]): those
    /// named in `tools`, or all of them when it is empty.
    Mcp { server: String, tools: Vec<String> },
}

/// A tool name every API accepts: letters, digits, `_`, `-`; at most 64.
pub fn tool_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "tool".into()
    } else {
        name
    }
}
