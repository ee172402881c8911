//! The messages a skill would send to its model, without sending them:
//! what an MCP client gets for `prompts/get`.
//!
//! Only the kinds that make one model call have such messages — prompt,
//! conversation (with its context files, without any history) and agent
//! skills. A workflow makes several calls that depend on each other, and
//! command and session skills make none: they have no prompt.

use std::path::Path;

use skillkernel_providers::ChatMessage;

use super::context;
use super::params::{self, Args};
use super::prompt::{self, Values};
use crate::model::SkillBody;
use crate::Skill;
use crate::SkillError;

/// The messages of `skill` for `input` and `args` (checked as a run checks
/// them), or `None` when the skill's kind has no single prompt.
pub async fn render_prompt(
    skill: &Skill,
    args: &Args,
    input: &str,
    workdir: &Path,
) -> Result<Option<Vec<ChatMessage>>, SkillError> {
    let params = params::validate(skill, args)?;
    let values = Values {
        input,
        params: &params,
    };
    Ok(Some(match &skill.body {
        SkillBody::Prompt(p) => prompt::prompt_messages(p, &values)?,
        SkillBody::Conversation(c) => {
            let files = context::gather_off_thread(c, workdir).await?;
            prompt::conversation_messages(c, &values, &files, &[])?
        }
        SkillBody::Agent(a) => prompt::agent_messages(a, skill.source.dir().as_deref(), input),
        SkillBody::Workflow(_) | SkillBody::Command(_) | SkillBody::Session(_) => return Ok(None),
    }))
}
