//! `skill_request` / `skill_reply`: the skills as data (what `%skill`
//! shows as tables; `skillctl skill`).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

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

/// How `test` answers the tests' model calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestMode {
    #[default]
    Live,
    Record,
    Replay,
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

/// `test`: how each of a skill's tests went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillTestReport {
    /// `name@version`.
    pub skill: String,
    pub mode: TestMode,
    /// The model asked for, if one was.
    pub model: Option<String>,
    pub passed: usize,
    pub failed: usize,
    pub tests: Vec<SkillTestResult>,
    /// Where the answers were kept (`record`, when every test ran to an
    /// answer; a partial recording is not kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
}

/// One test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillTestResult {
    pub name: String,
    pub passed: bool,
    /// What did not hold, or why the run failed.
    pub failures: Vec<String>,
    pub answer: String,
    pub elapsed_ms: f64,
}

impl SkillTestReport {
    /// As a person reads it: one line per test, failures under it.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}: {} passed, {} failed ({})",
            self.skill,
            self.passed,
            self.failed,
            match self.mode {
                TestMode::Live => "live",
                TestMode::Record => "recorded",
                TestMode::Replay => "replayed",
            }
        );
        match (&self.recorded, self.mode) {
            (Some(path), _) => out.push_str(&format!("\n  answers kept in {path}")),
            (None, TestMode::Record) => {
                out.push_str("\n  answers not kept: a test did not run to an answer")
            }
            _ => {}
        }
        if self.tests.is_empty() {
            out.push_str("\n  no tests: add `tests` to the manifest, or a tests.yaml beside it");
        }
        for t in &self.tests {
            let mark = if t.passed { "ok  " } else { "FAIL" };
            out.push_str(&format!("\n  {mark} {} ({:.0} ms)", t.name, t.elapsed_ms));
            for f in &t.failures {
                out.push_str(&format!("\n       answer {f}"));
            }
        }
        out
    }
}

/// `install` / `update`: what was put into place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallReport {
    /// The folder's name in the user's skill directory (the skill's name).
    pub name: String,
    /// `name@version`.
    pub skill: String,
    pub path: String,
    pub source: String,
    /// The commit a git source resolved to; the URL or path otherwise.
    pub resolved: String,
    /// The skill's digest (blake3 of its files, hex).
    pub digest: String,
    /// The digest before, for an update.
    pub previous_digest: Option<String>,
    /// `signed by KEY`, `not signed …`, `bad signature: …`, `signatures not checked`.
    pub signature: String,
    pub signed_by: Option<String>,
    /// Whether a trusted key's signature trusted it (workspace trust).
    pub trusted: bool,
}

/// `installed`: one installed skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledSkill {
    pub name: String,
    pub skill: String,
    pub source: String,
    pub subdir: Option<String>,
    pub resolved: String,
    pub digest: String,
    pub installed_at: String,
    pub signed_by: Option<String>,
    /// `ok`, `modified` (its files differ from what was installed) or
    /// `missing`.
    pub state: String,
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

/// `trust` / `untrust`: where a skill stands with workspace trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustReport {
    /// `name@version`.
    pub skill: String,
    /// The manifest.
    pub path: Option<String>,
    /// `own` (built in, or a cell's), `not_needed`, `by_config` (`[skills]
    /// trust = "all"`), `trusted`, `untrusted`, `changed` (trusted once,
    /// its files differ now), `refused` (`builtin-only`), `unknown`.
    pub mark: String,
    /// What it asks for beyond the default, as a person reads it.
    pub asks: Vec<String>,
    /// The blake3 digest of its files now (hex).
    pub digest: Option<String>,
    /// When the trust in force (or withdrawn) was given, and how.
    pub trusted_at: Option<String>,
    pub via: Option<String>,
    /// Whether this request changed the trust store.
    pub recorded: bool,
    /// What could not be read, when `mark` is `unknown`.
    pub problem: Option<String>,
    /// `[skills] trust`: `ask`, `all` or `builtin-only`.
    pub policy: String,
}

impl TrustReport {
    /// The report as a person reads it (`%skill trust`, `skillctl skill
    /// trust`): where the skill stands, what it asks for, what changed.
    /// `withdrawing`: the answer to `untrust`.
    pub fn text(&self, withdrawing: bool) -> String {
        let r = self;
        let mut out = match (withdrawing, r.recorded, r.mark.as_str()) {
            (true, true, _) => format!("{}: trust withdrawn", r.skill),
            (true, false, _) => format!("{}: was not trusted", r.skill),
            (false, true, _) => format!("{}: trusted", r.skill),
            (false, false, "own") => format!(
                "{}: built in or defined by a cell; no trust needed",
                r.skill
            ),
            (false, false, "not_needed") => {
                format!(
                    "{}: asks for nothing beyond the default; no trust needed",
                    r.skill
                )
            }
            (false, false, "by_config") => {
                format!(
                    "{}: every skill is trusted ([skills] trust = \"all\")",
                    r.skill
                )
            }
            (false, false, "trusted") => format!("{}: trusted", r.skill),
            (false, false, "untrusted") => format!("{}: not trusted", r.skill),
            (false, false, "changed") => {
                format!("{}: its files changed since it was trusted", r.skill)
            }
            (false, false, "refused") => format!(
                "{}: may not run here ([skills] trust = \"builtin-only\")",
                r.skill
            ),
            (false, false, mark) => format!("{}: {mark}", r.skill),
        };
        if let Some(path) = &r.path {
            out.push_str(&format!("\n  from {path}"));
        }
        if !r.asks.is_empty() {
            out.push_str("\n  it asks for:");
            for ask in &r.asks {
                out.push_str(&format!("\n    - {ask}"));
            }
        }
        if let Some(d) = &r.digest {
            out.push_str(&format!("\n  digest (blake3 of its files): {d}"));
        }
        if let (Some(at), Some(via)) = (&r.trusted_at, &r.via) {
            out.push_str(&format!("\n  trusted at {at} by {via}"));
        }
        if let Some(p) = &r.problem {
            out.push_str(&format!("\n  problem: {p}"));
        }
        out
    }
}

impl InstallReport {
    /// The report as a person reads it (`%skill install`, `skillctl skill
    /// install`).
    pub fn text(&self) -> String {
        let verb = match &self.previous_digest {
            Some(d) if *d == self.digest => "reinstalled (unchanged)",
            Some(_) => "updated",
            None => "installed",
        };
        let mut out = format!(
            "{} {verb} at {}\n  from {} ({})\n  digest {}\n  {}",
            self.skill, self.path, self.source, self.resolved, self.digest, self.signature
        );
        if self.trusted {
            out.push_str("\n  trusted: signed by a key in [skills.signatures] keys");
        }
        out
    }
}
