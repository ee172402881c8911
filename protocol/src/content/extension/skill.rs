//! `skill_request` / `skill_reply`: the skills as data (what `%skill`
//! shows as tables; `skillctl skill`).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::skill_share::{InstallReport, InstalledSkill, SkillTestReport, TestMode, TrustReport};
use super::{ErrorWithHint, ExtensionRequest};
use crate::RequestType;

/// `skill_request` content: `{"action": …}` and the fields the action
/// needs. `SKILL` is `name` or `name@requirement` (`summarize@^1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SkillRequest {
    /// Every skill, and the files that did not load.
    List,
    /// Skills matching `query`: words, `tag:T`, `author:A`, `category:C`.
    Search {
        #[serde(default, deserialize_with = "null_as_default")]
        query: String,
    },
    /// One skill in full.
    Info {
        skill: String,
    },
    /// Runs a skill on `input`; output streams on IOPub.
    Run {
        skill: String,
        #[serde(default, deserialize_with = "null_as_default")]
        input: String,
        /// Parameters; strings are converted by the parameter's type.
        #[serde(default, deserialize_with = "null_as_default")]
        args: Map<String, Value>,
    },
    /// Loads a skill file or folder (`path`) into the session, or parses
    /// a known skill (`skill`) now. One of the two is needed.
    Load {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skill: Option<String>,
    },
    /// Re-reads one skill, or (without `skill`) every skill directory.
    Reload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skill: Option<String>,
    },
    Unload {
        skill: String,
    },
    Enable {
        skill: String,
    },
    Disable {
        skill: String,
    },
    /// Checks a file or folder (`path`) or a known skill (`skill`);
    /// neither: every skill.
    Validate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skill: Option<String>,
    },
    /// Execution metrics of one skill, or (without `skill`) all.
    Metrics {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skill: Option<String>,
        #[serde(default, deserialize_with = "null_as_default")]
        format: MetricsFormat,
    },
    /// Closes the breaker, zeroes the metrics, forgets the conversation.
    Reset {
        skill: String,
    },
    /// Workspace trust in a skill that asks for more than the default:
    /// without `confirm`, what it asks for and where it stands (the
    /// review); with `confirm`, recorded against its digest now — which
    /// must be `digest` when given (what the user reviewed).
    Trust {
        skill: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        #[serde(default, deserialize_with = "null_as_default")]
        confirm: bool,
    },
    /// Withdraws trust in a skill.
    Untrust {
        skill: String,
    },
    /// Installs a skill into the user's skill directory from `source`: a
    /// git URL (with `ref` and `subdir`), an http(s) or file URL or path of
    /// a `.tar.gz`/`.zip`, or a local folder.
    Install {
        source: String,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        git_ref: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subdir: Option<String>,
    },
    /// Fetches an installed skill again from its source; without `skill`,
    /// every installed skill.
    Update {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skill: Option<String>,
    },
    /// Removes an installed skill.
    Remove {
        skill: String,
    },
    /// The installed skills, as the lock file records them.
    Installed,
    /// Runs a skill's own tests: live against `model` (default: its own
    /// routing), `record` (live, answers kept beside the skill) or
    /// `replay` (answered from what was kept: no model).
    Test {
        skill: String,
        #[serde(default, deserialize_with = "null_as_default")]
        mode: TestMode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
}

impl ExtensionRequest for SkillRequest {
    const TYPE: RequestType = RequestType::Skill;
    type Answer = SkillReply;
    type Error = ErrorWithHint;
}

/// How `metrics` are reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsFormat {
    /// `metrics`: a JSON object.
    #[default]
    Json,
    /// `prometheus`: the text exposition format.
    Prometheus,
}

/// An optional field for which `null` means the default, as absence does.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// What a `skill_reply` with `status: ok` carries, tagged by the request's
/// `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SkillReply {
    List(SkillListing),
    Search {
        /// Best first.
        skills: Vec<SkillHit>,
    },
    Info {
        skill: Box<SkillDetails>,
    },
    Run {
        /// The answer.
        output: String,
        /// The answer as JSON, when the skill has an output schema (it
        /// validated against it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json: Option<Value>,
        /// A tool loop's calls, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_steps: Vec<ToolStepReport>,
        run: RunReport,
    },
    Load {
        skill: Box<SkillSummary>,
    },
    Reload {
        report: ReloadReport,
    },
    /// `name@version` of each version changed.
    Unload {
        skills: Vec<String>,
    },
    Enable {
        skills: Vec<String>,
    },
    Disable {
        skills: Vec<String>,
    },
    Validate(Validation),
    Metrics(MetricsReport),
    Reset(SkillReset),
    Trust(TrustReport),
    Untrust(TrustReport),
    Install(InstallReport),
    Update {
        skills: Vec<InstallReport>,
    },
    Remove {
        /// The folder's name.
        skill: String,
        /// Where it was.
        path: String,
    },
    Installed {
        skills: Vec<InstalledSkill>,
    },
    Test(SkillTestReport),
}

/// `list`: the skills and the files or versions that did not load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillListing {
    pub skills: Vec<SkillSummary>,
    pub failures: Vec<SkillFailure>,
}

/// A skill object: one version of a skill as listings show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillSummary {
    /// `name@version`.
    pub id: String,
    pub name: String,
    pub version: String,
    /// `prompt`, `workflow`, `conversation`, `agent`, `command`, `session`.
    pub kind: String,
    pub description: String,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub category: Option<String>,
    /// Where it was found: `builtin`, `user`, `cell` …
    pub origin: String,
    /// `native`, `agent_skills` or `skillrunner`.
    pub format: String,
    pub path: Option<String>,
    /// Its lifecycle state: `Unloaded`, `Loaded`, `Ready`, `Active` …
    pub state: String,
    /// Why it is disabled, when it is.
    pub disabled: Option<String>,
    /// The origin of the source that hides this one.
    pub shadowed_by: Option<String>,
    /// Why it is `Failed`.
    pub error: Option<SkillErrorInfo>,
    /// Workspace trust (see [`TrustReport::mark`]); absent when unknown
    /// (a file that does not load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
}

impl SkillSummary {
    /// The trust column of a listing: blank where nothing is asked of the
    /// user (built in, a cell's, asks for nothing).
    pub fn trust_label(&self) -> &'static str {
        match self.trust.as_deref() {
            Some("trusted") => "trusted",
            Some("by_config") => "trusted (all)",
            Some("untrusted") => "UNTRUSTED",
            Some("changed") => "CHANGED",
            Some("refused") => "refused",
            Some("unknown") => "?",
            _ => "",
        }
    }
}

/// A skill error: its code (`SKILL_NOT_FOUND` …), what went wrong and
/// what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillErrorInfo {
    pub code: String,
    pub message: String,
    pub hint: String,
    /// `name@version`, when known.
    pub skill: Option<String>,
}

/// A skill file or version that does not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillFailure {
    pub skill: Option<String>,
    pub path: Option<String>,
    pub code: String,
    pub message: String,
    pub hint: String,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillHit {
    #[serde(flatten)]
    pub skill: SkillSummary,
    pub score: u32,
    /// Every version of the name, highest first.
    pub versions: Vec<String>,
}

/// `info`: a skill object and everything else known of the skill.
/// The engine's own reports (parameters, lifecycle history, breaker,
/// metrics) are carried as it writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillDetails {
    #[serde(flatten)]
    pub skill: SkillSummary,
    pub license: Option<String>,
    pub parameters: Vec<SkillParameter>,
    pub dependencies: Vec<SkillDependency>,
    /// Runs in progress.
    pub executions: usize,
    /// `[{at_unix_ms, from, to, hook, duration}]`, oldest first.
    pub history: Value,
    /// Sources of the same name and version it hides.
    pub shadowed: Value,
    /// `name@version` of the skills whose dependencies it satisfies.
    pub dependents: Vec<String>,
    /// The versions its dependencies resolved to.
    pub resolved: Vec<String>,
    /// Every version of the name, highest first.
    pub versions: Vec<String>,
    /// `{state, consecutive_failures, threshold, retry_in_ms, times_opened}`.
    pub breaker: Value,
    pub metrics: Value,
    pub conversation_turns: usize,
}

/// A parameter of a skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillParameter {
    pub name: String,
    /// `string`, `number`, `bool` or `enum`.
    pub type_name: String,
    pub required: bool,
    pub description: String,
    /// The allowed values of an enum parameter.
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub default: Option<Value>,
}

/// A dependency: a skill name and a version requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillDependency {
    pub name: String,
    pub version: String,
}

/// A run's figures (also the `metadata.skill` of a `%%run` cell's
/// `execute_reply`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// `name@version`.
    pub skill: String,
    pub phases: Vec<PhaseReport>,
    pub elapsed_ms: f64,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached_calls: u32,
    pub retries: u32,
    pub attempts: u32,
    pub interrupted: bool,
}

/// One tool call of a tool loop and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolStepReport {
    /// The model call (from 1) that asked for it.
    pub step: u32,
    pub call_id: String,
    pub tool: String,
    pub arguments: Value,
    /// False when it failed, timed out, was refused, or named no tool.
    pub ok: bool,
    /// What the model was given.
    pub result: String,
    pub elapsed_ms: f64,
}

/// One model call of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    pub id: String,
    pub name: String,
    /// `name@backend` of the model that answered.
    pub model: String,
    /// The routing profile that chose it.
    pub profile: Option<String>,
    pub elapsed_ms: f64,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached: bool,
    pub attempts: u32,
    /// `stop`, `length` or `cancelled`.
    pub finish_reason: String,
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub failed: Vec<SkillFailure>,
    pub unchanged: usize,
    pub elapsed_ms: f64,
}

/// `validate`: whether everything checked loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub valid: bool,
    /// What loaded: skill objects (of a path, only `id`, `name`,
    /// `version`, `kind`, `description`, `path`), or, when every skill was
    /// checked, their ids.
    pub skills: Vec<Value>,
    pub errors: Vec<ValidationError>,
}

/// Why a skill does not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// `name@version`, when every skill was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    pub file: Option<String>,
    /// A dotted path into the manifest (`phases[2].depends_on`).
    pub field: Option<String>,
    /// 1-based.
    pub line: Option<usize>,
    pub message: String,
    pub remedy: String,
}

/// `metrics`, in the format asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricsReport {
    /// `{skills: {NAME: {executions, errors, …}}}`.
    Json { metrics: Value },
    /// The Prometheus text exposition.
    Prometheus { prometheus: String },
}

/// `reset`: what was reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillReset {
    /// The skill's name.
    pub skill: String,
    /// The breaker now.
    pub breaker: Value,
    /// Whether a conversation was forgotten.
    pub conversation_cleared: bool,
}
