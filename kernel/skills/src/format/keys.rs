//! The native manifest's accepted keys, per level: what the parsers
//! accept and what the JSON Schema test checks the schema against.
//!
//! A leaf: the parsers (`native`, `bodies`, `sections`) import it, it
//! imports none of them.

pub use super::params::PARAM_KEYS;
use crate::model::SkillKind;

/// Keys every kind accepts.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "author",
    "license",
    "tags",
    "category",
    "compatibility",
    "metadata",
    "type",
    "parameters",
    "routing",
    "generation",
    "dependencies",
    "resilience",
    "tests",
];
pub const PROMPT_KEYS: &[&str] = &[
    "system",
    "template",
    "output_schema",
    "tools",
    "max_steps",
    "tool_timeout_secs",
    "tool_choice",
];
pub const WORKFLOW_KEYS: &[&str] = &["phases", "max_parallel", "output", "output_schema"];
pub const CONVERSATION_KEYS: &[&str] = &[
    "system",
    "context",
    "output_schema",
    "tools",
    "max_steps",
    "tool_timeout_secs",
    "tool_choice",
];
/// Kept raw for the sandbox (`CommandSkill::policy`).
pub const POLICY_KEYS: &[&str] = &[
    "permissions",
    "resource_limits",
    "sandbox",
    "timeout",
    "retries",
];
pub const COMMAND_KEYS: &[&str] = &["command", "args", "env", "fallback"];
pub const SESSION_KEYS: &[&str] = &["command", "args", "env", "reply", "marker"];
pub const ROUTING_KEYS: &[&str] = &["profile", "model"];
pub const GENERATION_KEYS: &[&str] = &["max_tokens", "temperature"];
pub const RESILIENCE_KEYS: &[&str] = &[
    "retries",
    "backoff_initial_ms",
    "backoff_max_ms",
    "timeout_secs",
    "circuit_threshold",
    "circuit_recovery_secs",
];
pub const DEPENDENCY_KEYS: &[&str] = &["name", "version"];

pub const PHASE_KEYS: &[&str] = &[
    "id",
    "name",
    "system",
    "template",
    "prompt_template",
    "depends_on",
    "routing_profile",
    "model",
    "max_tokens",
    "temperature",
    "output_schema",
];
pub const CONTEXT_KEYS: &[&str] = &[
    "include",
    "exclude",
    "max_files",
    "max_file_bytes",
    "max_total_bytes",
];
pub const FALLBACK_KEYS: &[&str] = &["command", "args", "env"];

/// The keys a kind accepts besides [`COMMON_KEYS`].
pub fn kind_keys(kind: SkillKind) -> Vec<&'static str> {
    match kind {
        SkillKind::Prompt => PROMPT_KEYS.to_vec(),
        SkillKind::Workflow => WORKFLOW_KEYS.to_vec(),
        SkillKind::Conversation => CONVERSATION_KEYS.to_vec(),
        SkillKind::Command => [COMMAND_KEYS, POLICY_KEYS].concat(),
        SkillKind::Session => [SESSION_KEYS, POLICY_KEYS].concat(),
        SkillKind::Agent => Vec::new(),
    }
}

/// Every top-level key a native manifest of `kind` accepts.
pub fn for_kind(kind: SkillKind) -> Vec<&'static str> {
    [COMMON_KEYS, &kind_keys(kind)].concat()
}
