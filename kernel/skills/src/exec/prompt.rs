//! The messages of the kinds that make one model call: prompt,
//! conversation and agent skills.
//!
//! * prompt — the rendered system template, then the rendered template as
//!   the user message;
//! * conversation — the rendered system prompt followed by the context
//!   files, then the history, then the input;
//! * agent — the `SKILL.md` instructions and the list of its resources as
//!   the system prompt, the input as the user message.
//!
//! Rendering only: nothing here calls a model or reads a file.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde_json::{Map, Value};
use skillkernel_providers::ChatMessage;

use super::context::ContextFile;
use crate::model::{AgentSkill, ConversationSkill, PromptSkill};
use crate::template::{Template, TemplateValues};
use crate::{ErrorCode, SkillError};

pub(crate) fn message(role: &str, content: String) -> ChatMessage {
    ChatMessage::new(role, content)
}

/// What the templates of one rendering see.
pub(crate) struct Values<'a> {
    pub input: &'a str,
    pub params: &'a Map<String, Value>,
}

impl Values<'_> {
    /// Renders `template`; `place` says which template for the error.
    pub(crate) fn render(
        &self,
        template: &Template,
        phases: &BTreeMap<String, minijinja::Value>,
        place: &str,
    ) -> Result<String, SkillError> {
        template
            .render(&TemplateValues {
                input: self.input,
                phases,
                params: self.params,
            })
            .map_err(|e| {
                SkillError::new(
                    ErrorCode::SkillExecutionError,
                    format!("{place}: {}", e.message),
                    e.remedy,
                )
            })
    }
}

pub(crate) fn prompt_messages(
    p: &PromptSkill,
    values: &Values<'_>,
) -> Result<Vec<ChatMessage>, SkillError> {
    let none = BTreeMap::new();
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &p.system {
        messages.push(message(
            "system",
            values.render(system, &none, "the system prompt")?,
        ));
    }
    messages.push(message(
        "user",
        values.render(&p.template, &none, "the template")?,
    ));
    Ok(messages)
}

pub(crate) fn conversation_messages(
    c: &ConversationSkill,
    values: &Values<'_>,
    context: &[ContextFile],
    history: &[ChatMessage],
) -> Result<Vec<ChatMessage>, SkillError> {
    let mut system = values.render(&c.system, &BTreeMap::new(), "the system prompt")?;
    if !context.is_empty() {
        system.push_str("\n\n# Context files\n");
        for file in context {
            let fence = fence_for(&file.content);
            let _ = write!(
                system,
                "\n## {}\n{fence}\n{}\n{fence}\n",
                file.path.display(),
                file.content.trim_end_matches('\n')
            );
        }
    }
    let mut messages = Vec::with_capacity(history.len() + 2);
    messages.push(message("system", system));
    messages.extend(history.iter().cloned());
    messages.push(message("user", values.input.to_owned()));
    Ok(messages)
}

/// A code fence longer than any run of backticks in `content`.
fn fence_for(content: &str) -> String {
    let longest = content.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

pub(crate) fn agent_messages(a: &AgentSkill, dir: Option<&Path>, input: &str) -> Vec<ChatMessage> {
    let mut system = a.instructions.trim_end().to_owned();
    if !a.resources.is_empty() {
        system.push_str("\n\n# Resources\n\n");
        match dir {
            Some(dir) => {
                let _ = writeln!(
                    system,
                    "These files come with the skill, in {}:",
                    dir.display()
                );
            }
            None => system.push_str("These files come with the skill:\n"),
        }
        for resource in &a.resources {
            let _ = writeln!(system, "- {}", resource.display());
        }
    }
    vec![message("system", system), message("user", input.to_owned())]
}
