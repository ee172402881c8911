//! The one model every skill format is parsed into.
//!
//! A native `skill.yaml`, an Agent Skills `SKILL.md`, a Skillrunner workflow
//! and a `%%skill` cell all become a [`Skill`]. Everything after parsing —
//! the registry, the executor, `%skill info`, `skill_reply` — reads only
//! this model, never a file format. Values here are already validated:
//! a `Skill` that exists has a well-formed name, a semver version, templates
//! whose variables all resolve, and (for workflows) an acyclic phase graph.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::output::OutputSchema;
use super::template::Template;
use super::tools::Toolbox;

/// A loaded, validated skill.
#[derive(Debug, Clone)]
pub struct Skill {
    pub meta: SkillMeta,
    /// Typed inputs, checked before any model call.
    pub parameters: Vec<Parameter>,
    /// Other skills this one needs, by name and semver range.
    pub dependencies: Vec<Dependency>,
    /// Where its model calls go unless a phase says otherwise.
    pub routing: Routing,
    /// Generation settings for its model calls unless a phase says otherwise.
    pub generation: GenerationOverrides,
    pub resilience: Resilience,
    pub body: SkillBody,
    /// The JSON Schema the answer must satisfy (`output_schema`): of a
    /// prompt, conversation or agent skill's call, or of a workflow's
    /// output phase when that phase sets none of its own.
    pub output: Option<OutputSchema>,
    /// What the model may call (prompt, conversation and agent skills);
    /// empty: one model call, no loop.
    pub tools: Toolbox,
    pub source: Source,
}

impl Skill {
    /// `name@version`, the key a skill is known by in the registry.
    pub fn id(&self) -> String {
        format!("{}@{}", self.meta.name, self.meta.version)
    }

    pub fn kind(&self) -> SkillKind {
        self.body.kind()
    }

    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// What the registry keeps before the skill is first used.
    pub fn header(&self) -> SkillHeader {
        SkillHeader {
            meta: self.meta.clone(),
            kind: self.kind(),
            parameters: self.parameters.iter().map(Parameter::summary).collect(),
            dependencies: self.dependencies.clone(),
            source: self.source.clone(),
        }
    }
}

/// What the registry keeps of a skill it has not loaded yet (lazy
/// loading): enough to list, search, complete and resolve dependencies,
/// without compiling templates. Persisted in the registry's index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillHeader {
    pub meta: SkillMeta,
    pub kind: SkillKind,
    pub parameters: Vec<ParamSummary>,
    pub dependencies: Vec<Dependency>,
    pub source: Source,
}

/// A parameter as listings and completion show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSummary {
    pub name: String,
    /// `string`, `number`, `bool` or `enum`.
    pub type_name: String,
    pub required: bool,
    pub description: String,
    /// The allowed values of an enum parameter.
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

impl Parameter {
    pub fn summary(&self) -> ParamSummary {
        ParamSummary {
            name: self.name.clone(),
            type_name: self.kind.type_name().into(),
            required: self.required,
            description: self.description.clone(),
            values: match &self.kind {
                ParamKind::Enum(v) => v.clone(),
                _ => Vec::new(),
            },
            default: self.default.clone(),
        }
    }
}

/// What a skill says about itself: all the registry indexes and searches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillMeta {
    /// Lowercase letters, digits and single hyphens, at most 64 characters.
    pub name: String,
    pub version: semver::Version,
    /// At most 1024 characters.
    pub description: String,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// Agent Skills `compatibility`: what environment the skill expects.
    #[serde(default)]
    pub compatibility: Option<String>,
    /// Agent Skills `allowed-tools`, kept as written.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// Free-form string metadata (Agent Skills `metadata`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl SkillMeta {
    /// A name, version and description; everything else unset.
    pub fn new(
        name: impl Into<String>,
        version: semver::Version,
        description: impl Into<String>,
    ) -> Self {
        SkillMeta {
            name: name.into(),
            version,
            description: description.into(),
            author: None,
            license: None,
            tags: Vec::new(),
            category: None,
            compatibility: None,
            allowed_tools: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }
}

/// The kinds of skill, as `type:` names them in a native manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillKind {
    Prompt,
    Workflow,
    Conversation,
    /// An Agent Skills `SKILL.md`: instructions plus resources.
    Agent,
    Command,
    Session,
}

impl SkillKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SkillKind::Prompt => "prompt",
            SkillKind::Workflow => "workflow",
            SkillKind::Conversation => "conversation",
            SkillKind::Agent => "agent",
            SkillKind::Command => "command",
            SkillKind::Session => "session",
        }
    }
}

impl std::fmt::Display for SkillKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What running the skill does, by kind.
#[derive(Debug, Clone)]
pub enum SkillBody {
    Prompt(PromptSkill),
    Workflow(WorkflowSkill),
    Conversation(ConversationSkill),
    Agent(AgentSkill),
    Command(CommandSkill),
    Session(SessionSkill),
}

impl SkillBody {
    pub fn kind(&self) -> SkillKind {
        match self {
            SkillBody::Prompt(_) => SkillKind::Prompt,
            SkillBody::Workflow(_) => SkillKind::Workflow,
            SkillBody::Conversation(_) => SkillKind::Conversation,
            SkillBody::Agent(_) => SkillKind::Agent,
            SkillBody::Command(_) => SkillKind::Command,
            SkillBody::Session(_) => SkillKind::Session,
        }
    }
}

/// One templated model call.
#[derive(Debug, Clone)]
pub struct PromptSkill {
    /// The system message, if any.
    pub system: Option<Template>,
    /// The user message.
    pub template: Template,
}

/// A DAG of templated model calls.
#[derive(Debug, Clone)]
pub struct WorkflowSkill {
    /// In file order; dependencies always name earlier-validated ids.
    pub phases: Vec<Phase>,
    /// Phases run at once at most (at least 1).
    pub max_parallel: usize,
    /// The phase whose output is the skill's result. When the manifest
    /// names none, the single phase nothing depends on; a workflow with
    /// several such phases and no `output` is a load error.
    pub output: String,
}

impl WorkflowSkill {
    pub fn phase(&self, id: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.id == id)
    }
}

/// One step of a workflow.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Letters, digits, `_` and `-`; unique in the workflow.
    pub id: String,
    /// A human name for progress output; defaults to the id.
    pub name: String,
    pub system: Option<Template>,
    pub template: Template,
    /// Phases whose outputs this one reads (`{{phases.ID}}`) or waits for.
    pub depends_on: Vec<String>,
    /// Overrides the skill's routing for this phase.
    pub routing: Routing,
    /// Overrides the skill's generation settings for this phase.
    pub generation: GenerationOverrides,
    /// The JSON Schema this phase's answer must satisfy; later phases
    /// read its fields (`{{ phases.ID.field }}`).
    pub output: Option<OutputSchema>,
}

/// A system prompt plus files from disk as context.
#[derive(Debug, Clone)]
pub struct ConversationSkill {
    pub system: Template,
    pub context: ContextFiles,
}

/// Which files a conversation skill reads as context, and how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextFiles {
    /// Globs relative to the working directory of the run (`src/**/*.rs`).
    pub include: Vec<String>,
    /// Globs that take files back out (`**/target/**`).
    pub exclude: Vec<String>,
    /// At most this many files; more is an error naming the count.
    pub max_files: usize,
    /// A file larger than this is an error naming it.
    pub max_file_bytes: u64,
    /// All files together larger than this is an error.
    pub max_total_bytes: u64,
}

impl Default for ContextFiles {
    fn default() -> Self {
        ContextFiles {
            include: Vec::new(),
            exclude: Vec::new(),
            max_files: 20,
            max_file_bytes: 64 * 1024,
            max_total_bytes: 256 * 1024,
        }
    }
}

/// An Agent Skills skill: its instructions become the system prompt when it
/// is activated; its resources are listed for the model and the user.
#[derive(Debug, Clone)]
pub struct AgentSkill {
    /// The Markdown body of `SKILL.md` after the frontmatter.
    pub instructions: String,
    /// Files under the skill's folder (`scripts/`, `references/`,
    /// `assets/`), relative to it.
    pub resources: Vec<PathBuf>,
}

/// A program run once per execution, in the sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSkill {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Run instead when the command fails.
    #[serde(default)]
    pub fallback: Option<Box<CommandSkill>>,
    /// `permissions`, `resource_limits`, `sandbox`, `timeout`, `retries`
    /// as written in the manifest; the sandbox interprets them.
    #[serde(default)]
    pub policy: serde_json::Map<String, serde_json::Value>,
}

/// A named process kept between executions, in the sandbox (see
/// [`skillkernel_sandbox::sessions`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSkill {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How an answer ends: after the `marker` command's line (default
    /// `echo {marker}`), or after one line.
    pub reply: skillkernel_sandbox::sessions::Reply,
    /// `permissions`, `resource_limits`, `sandbox`, `timeout`, `retries`
    /// as written in the manifest; the sandbox interprets them.
    #[serde(default)]
    pub policy: serde_json::Map<String, serde_json::Value>,
}

/// A typed input of a skill.
#[derive(Debug, Clone)]
pub struct Parameter {
    /// A template variable name: letters, digits, `_`, not starting with a digit.
    pub name: String,
    pub kind: ParamKind,
    pub description: String,
    /// Must be given (and has no default).
    pub required: bool,
    /// Used when the caller gives none; already valid for `kind`.
    pub default: Option<serde_json::Value>,
    /// For strings: the whole value must match.
    pub pattern: Option<regex::Regex>,
}

/// The type of a [`Parameter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    String,
    Number,
    Bool,
    /// One of these strings.
    Enum(Vec<String>),
}

impl ParamKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Number => "number",
            ParamKind::Bool => "bool",
            ParamKind::Enum(_) => "enum",
        }
    }
}

/// A dependency on another skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    pub name: String,
    /// `^1.2`, `>=0.3, <0.5`, `*`.
    pub version: semver::VersionReq,
}

/// Where model calls go. Both empty: the session's current model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    /// A routing profile of the `[models.profiles]` table (`cheap`,
    /// `balanced`, `premium`).
    #[serde(default)]
    pub profile: Option<String>,
    /// A model specifier, `name[@backend]`; wins over `profile`.
    #[serde(default)]
    pub model: Option<String>,
}

impl Routing {
    /// The specifier the providers' registry routes: the model, else the
    /// profile, else `None` for the session's model.
    pub fn spec(&self) -> Option<&str> {
        self.model.as_deref().or(self.profile.as_deref())
    }

    /// `self` where set, else `fallback`.
    pub fn or(&self, fallback: &Routing) -> Routing {
        if self.spec().is_some() {
            self.clone()
        } else {
            fallback.clone()
        }
    }
}

/// Generation settings a skill or phase sets; unset fields keep the
/// kernel's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationOverrides {
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
}

impl GenerationOverrides {
    /// Each field of `self` where set, else `fallback`'s.
    pub fn or(&self, fallback: &GenerationOverrides) -> GenerationOverrides {
        GenerationOverrides {
            max_tokens: self.max_tokens.or(fallback.max_tokens),
            temperature: self.temperature.or(fallback.temperature),
        }
    }
}

/// How a skill's executions survive failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resilience {
    /// Retries after a transient failure (provider unavailable, timeout).
    pub retries: u32,
    /// First backoff; doubled each retry up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// One execution, retries included, is stopped after this.
    pub timeout: Duration,
    /// Consecutive failed executions that open the circuit breaker.
    pub circuit_threshold: u32,
    /// How long an open breaker refuses before letting one trial through.
    pub circuit_recovery: Duration,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            retries: 2,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            timeout: Duration::from_secs(300),
            circuit_threshold: 5,
            circuit_recovery: Duration::from_secs(30),
        }
    }
}

/// Which format a skill came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillFormat {
    /// `skill.yaml`, `skill.yml` or `skill.json`.
    Native,
    /// An Agent Skills `SKILL.md`.
    AgentSkills,
    /// A Skillrunner workflow YAML.
    Skillrunner,
}

/// Where a skill was loaded from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub format: SkillFormat,
    /// The manifest file; `None` for a skill defined in a cell.
    pub path: Option<PathBuf>,
    /// Where the skill came from: a configured directory, the working
    /// directory's `.skillkernel/skills`, the user's directory, built in,
    /// or a `%%skill` cell.
    pub origin: Origin,
}

impl Source {
    /// The skill's folder (for resources and relative paths).
    pub fn dir(&self) -> Option<PathBuf> {
        self.path
            .as_ref()
            .and_then(|p| p.parent().map(PathBuf::from))
    }

    /// What to call the source in an error or a listing.
    pub fn display(&self) -> String {
        match (&self.path, self.origin) {
            (Some(p), _) => p.display().to_string(),
            (None, Origin::Cell) => "<%%skill cell>".into(),
            (None, Origin::Builtin) => "<built in>".into(),
            (None, _) => "<unknown>".into(),
        }
    }
}

/// Where a skill was discovered; earlier variants shadow later ones when
/// the same name and version appear twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Defined by a `%%skill` cell in this session.
    Cell,
    /// `<working directory>/.skillkernel/skills`.
    Project,
    /// A directory of the `[skills] dirs` config.
    Configured,
    /// The user's directory (`~/.local/share/skillkernel/skills`).
    User,
    /// Compiled into the binary.
    Builtin,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cell => "cell",
            Origin::Project => "project",
            Origin::Configured => "configured",
            Origin::User => "user",
            Origin::Builtin => "builtin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_routing_wins_over_the_skill_routing_only_when_set() {
        let skill = Routing {
            profile: Some("cheap".into()),
            model: None,
        };
        assert_eq!(Routing::default().or(&skill).spec(), Some("cheap"));
        let phase = Routing {
            profile: None,
            model: Some("llama3.2@ollama".into()),
        };
        assert_eq!(phase.or(&skill).spec(), Some("llama3.2@ollama"));
    }

    #[test]
    fn generation_overrides_merge_field_by_field() {
        let skill = GenerationOverrides {
            max_tokens: Some(100),
            temperature: Some(0.5),
        };
        let phase = GenerationOverrides {
            max_tokens: Some(20),
            temperature: None,
        };
        assert_eq!(
            phase.or(&skill),
            GenerationOverrides {
                max_tokens: Some(20),
                temperature: Some(0.5)
            }
        );
    }
}
