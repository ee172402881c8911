//! The registry as MCP sees it: enabled skills as tools and prompts.
//!
//! A tool's input schema is the skill's arguments (`input` and its
//! parameters, as the tool loop offers skills to models); its output
//! schema is the skill's `output_schema` when that describes an object
//! (MCP's structured content is an object). Listing loads each skill
//! (parsing it once; the registry keeps it), so that a skill that does
//! not load is left out instead of failing when called.

use std::sync::Arc;

use rmcp::model::{
    GetPromptRequestParams, GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage,
    Role, Tool,
};
use rmcp::ErrorData as McpError;
use serde_json::Value;
use skillkernel_skills::arguments::skill_arguments_schema;
use skillkernel_skills::exec::{render_prompt, Args};
use skillkernel_skills::service::Skills;
use skillkernel_skills::{Skill, SkillKind};

use crate::host::Host;

/// Every enabled skill that loads, one version per name (the one a run
/// of the bare name selects).
pub async fn enabled_skills(host: &dyn Host) -> Vec<Arc<Skill>> {
    let Some(skills) = host.skills() else {
        return Vec::new();
    };
    tokio::task::spawn_blocking(move || {
        let mut names: Vec<String> = skills
            .registry
            .list()
            .into_iter()
            .filter(|e| e.disabled.is_none() && e.shadowed_by.is_none())
            .map(|e| e.header.meta.name)
            .collect();
        names.dedup();
        names
            .iter()
            .filter_map(|name| match skills.registry.loaded(name) {
                Ok(skill) => Some(skill),
                Err(e) => {
                    tracing::debug!(skill = %name, error = %e.message, "not offered over MCP");
                    None
                }
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// The skills as tools.
pub async fn tools(host: &dyn Host) -> Vec<Tool> {
    enabled_skills(host).await.iter().map(|s| tool(s)).collect()
}

fn tool(skill: &Skill) -> Tool {
    let mut tool = Tool::new(
        skill.meta.name.clone(),
        description(skill),
        Arc::new(as_object(skill_arguments_schema(skill))),
    );
    if let Some(schema) = output_object_schema(skill) {
        tool = tool.with_raw_output_schema(Arc::new(schema));
    }
    tool
}

fn description(skill: &Skill) -> String {
    let what = skill.meta.description.trim();
    let kind = skill.kind().as_str();
    if what.is_empty() {
        format!("Runs the {kind} skill {}.", skill.meta.name)
    } else {
        format!("{what} ({kind} skill {})", skill.id())
    }
}

/// The skill's output schema, when it describes an object.
pub fn output_object_schema(skill: &Skill) -> Option<JsonObject> {
    let schema = skill.output.as_ref()?.schema();
    let object = schema.as_object()?;
    (object.get("type") == Some(&Value::from("object"))).then(|| object.clone())
}

fn as_object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// Whether the skill makes one model call, and so has a prompt.
fn has_prompt(skill: &Skill) -> bool {
    matches!(
        skill.kind(),
        SkillKind::Prompt | SkillKind::Conversation | SkillKind::Agent
    )
}

/// The skills that make one model call, as prompts.
pub async fn prompts(host: &dyn Host) -> Vec<Prompt> {
    enabled_skills(host)
        .await
        .iter()
        .filter(|s| has_prompt(s))
        .map(|skill| {
            let mut arguments = vec![PromptArgument::new("input")
                .with_description("The text the skill works on.")
                .with_required(false)];
            for p in &skill.parameters {
                let mut argument = PromptArgument::new(p.name.clone())
                    .with_required(p.required && p.default.is_none());
                if !p.description.is_empty() {
                    argument = argument.with_description(p.description.clone());
                }
                arguments.push(argument);
            }
            Prompt::new(
                skill.meta.name.clone(),
                Some(description(skill)),
                Some(arguments),
            )
        })
        .collect()
}

/// `prompts/get`: the skill's messages for the arguments given. System
/// text comes first, as a user message (MCP prompts have no system role).
pub async fn get_prompt(
    host: &dyn Host,
    request: GetPromptRequestParams,
) -> Result<GetPromptResult, McpError> {
    let skills = host
        .skills()
        .ok_or_else(|| McpError::invalid_params("the kernel has no skills", None))?;
    let skill = load(&skills, &request.name).await?;
    if !has_prompt(&skill) {
        return Err(McpError::invalid_params(
            format!(
                "{} is a {} skill: it has no single prompt; call it as a tool",
                skill.meta.name,
                skill.kind().as_str()
            ),
            None,
        ));
    }
    let mut given = request.arguments.unwrap_or_default();
    let input = match given.remove("input") {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let pairs = given
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    let messages = render_prompt(&skill, &Args::Text(pairs), &input, &skills.working_dir)
        .await
        .map_err(|e| McpError::invalid_params(format!("{} ({})", e.message, e.hint), None))?
        .unwrap_or_default();
    let messages = messages
        .into_iter()
        .map(|m| {
            let role = if m.role == "assistant" {
                Role::Assistant
            } else {
                Role::User
            };
            PromptMessage::new_text(role, m.content)
        })
        .collect();
    let mut result = GetPromptResult::new(messages);
    result.description = Some(description(&skill));
    Ok(result)
}

/// The enabled skill `name`, loaded; an unknown or disabled one is a
/// JSON-RPC invalid-params error naming it.
pub async fn load(skills: &Arc<Skills>, name: &str) -> Result<Arc<Skill>, McpError> {
    let registry = Arc::clone(&skills.registry);
    let owned = name.to_owned();
    tokio::task::spawn_blocking(move || registry.loaded(&owned))
        .await
        .map_err(|e| McpError::internal_error(format!("loading the skill failed: {e}"), None))?
        .map_err(|e| McpError::invalid_params(format!("{} ({})", e.message, e.hint), None))
}
