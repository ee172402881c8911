//! Tool loops: model → tool calls → results → model, until the model
//! answers, `max_steps` model calls were made, the run's timeout ends it,
//! or the caller interrupts.
//!
//! Each step is a model call offered the skill's tools ([`Toolbox`]).
//! Every call the model asks for is checked — a tool it was not given, or
//! arguments that are not valid for the tool's schema, get an error
//! result and are never run — then run: another skill through the
//! executor, a script in the sandbox under the skill's policy, a reference
//! file read from the skill's folder. Each call and its result are
//! reported as [`ExecEvent::ToolCalled`] / [`ExecEvent::ToolFinished`]
//! while the loop runs, and kept in [`RunOutput::tool_steps`]. A tool
//! that fails, times out or is refused by the sandbox is reported to the
//! model, which may go on. The answer is the text of the step that calls
//! no tool (validated against the output schema, if any, with one retry).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skillkernel_providers::tools::UNPARSED;
use skillkernel_providers::{ChatMessage, ToolCall, ToolChoice, ToolSpec};
use tokio::time::Instant;

use super::call::{Call, Run};
use super::events::{Answer, ExecEvent, PhaseResult, ToolStep};
use super::resilience::{call_with_retries, provider_error};
use super::tool_calls::{call_mcp, call_script, call_skill, cap, read_reference};
use super::{Executor, RunContext, RunRequest};
use crate::arguments::skill_arguments_schema;
use crate::external::{model_name, ExternalTool};
use crate::tools::{tool_name, ToolSource, Toolbox, REFERENCE_BYTES, RESULT_BYTES};
use crate::{ErrorCode, Skill, SkillError};

/// A tool ready to call in this run.
enum Ready {
    Skill(Arc<Skill>),
    Script(PathBuf),
    References(PathBuf),
    /// `tool` of MCP server `server`.
    Mcp {
        server: String,
        tool: String,
    },
}

/// The MCP servers' tools `skill` names, as the servers describe them
/// (starting the servers that are not running).
async fn mcp_tools(
    ctx: &RunContext,
    skill: &Skill,
) -> Result<Vec<(String, ExternalTool)>, SkillError> {
    let mut found = Vec::new();
    for source in &skill.tools.tools {
        let ToolSource::Mcp { server, tools } = source else {
            continue;
        };
        let Some(external) = &ctx.external else {
            return Err(SkillError::new(
                ErrorCode::DependencyError,
                format!("MCP server `{server}` is not available: this kernel has no MCP servers"),
                "configure it in the daemon's `[mcp.servers]`; docs/mcp.md shows how",
            ));
        };
        let offered = external.tools(server).await.map_err(|e| {
            SkillError::new(
                ErrorCode::DependencyError,
                e,
                "the MCP server listing (`%mcp`, `skillctl mcp servers`) shows its state; the daemon log says more",
            )
        })?;
        for wanted in tools {
            if !offered.iter().any(|t| &t.name == wanted) {
                let names: Vec<&str> = offered.iter().map(|t| t.name.as_str()).collect();
                return Err(SkillError::new(
                    ErrorCode::DependencyError,
                    format!(
                        "MCP server `{server}` has no tool `{wanted}`; it offers: {}",
                        names.join(", ")
                    ),
                    "name one of its tools in `tools`, or leave `tools` out to offer them all",
                ));
            }
        }
        found.extend(
            offered
                .into_iter()
                .filter(|t| tools.is_empty() || tools.contains(&t.name))
                .map(|t| (server.clone(), t)),
        );
    }
    Ok(found)
}

struct Tool {
    spec: ToolSpec,
    ready: Ready,
    validator: jsonschema::Validator,
}

/// The tools of `skill`, resolved: other skills from `skills` (handed in
/// by the caller, which resolved them), files from the skill's folder.
fn resolve(
    skill: &Skill,
    skills: &[Arc<Skill>],
    mcp: Vec<(String, ExternalTool)>,
) -> Result<Vec<Tool>, SkillError> {
    let dir = skill.source.dir();
    let mut tools = Vec::new();
    let mcp = mcp.into_iter().map(|(server, tool)| {
        let spec = ToolSpec {
            name: model_name(&server, &tool.name),
            description: tool.description,
            parameters: tool.input_schema,
        };
        (
            spec,
            Ready::Mcp {
                server,
                tool: tool.name,
            },
        )
    });
    let own = skill
        .tools
        .tools
        .iter()
        .filter(|s| !matches!(s, ToolSource::Mcp { .. }));
    let mut specs = Vec::new();
    for source in own {
        let (spec, ready) = match source {
            ToolSource::Skill { name, description } => {
                let Some(tool) = skills.iter().find(|s| &s.meta.name == name) else {
                    return Err(SkillError::new(
                        ErrorCode::DependencyError,
                        format!("tool skill `{name}` is not available"),
                        "add the skill, or remove it from `tools`; `%skill list` shows what is loaded",
                    ));
                };
                let spec = ToolSpec {
                    name: tool_name(name),
                    description: description
                        .clone()
                        .unwrap_or_else(|| tool.meta.description.clone()),
                    parameters: skill_arguments_schema(tool),
                };
                (spec, Ready::Skill(Arc::clone(tool)))
            }
            ToolSource::Script { name, path } => {
                let Some(dir) = &dir else { continue };
                let spec = ToolSpec {
                    name: name.clone(),
                    description: format!(
                        "Runs the script {} in the working directory with `args` as its command-line arguments; returns what it prints.",
                        path.display()
                    ),
                    parameters: json!({
                        "type": "object",
                        "properties": {"args": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 8}},
                        "required": ["args"],
                        "additionalProperties": false
                    }),
                };
                (spec, Ready::Script(dir.join(path)))
            }
            ToolSource::References { files } => {
                let Some(dir) = &dir else { continue };
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                let spec = ToolSpec {
                    name: "read_reference".into(),
                    description: format!(
                        "Reads one of the skill's reference files ({}); returns its text, at most {} KiB.",
                        names.join(", "),
                        REFERENCE_BYTES / 1024
                    ),
                    parameters: json!({
                        "type": "object",
                        "properties": {"path": {"enum": names}},
                        "required": ["path"],
                        "additionalProperties": false
                    }),
                };
                (spec, Ready::References(dir.clone()))
            }
            ToolSource::Mcp { .. } => continue,
        };
        specs.push((spec, ready));
    }
    for (spec, ready) in specs.into_iter().chain(mcp) {
        if tools.iter().any(|t: &Tool| t.spec.name == spec.name) {
            // Two MCP tools whose names differ only in what a tool name
            // may not hold (`a.b`, `a_b`), or cut at 64 characters.
            tracing::warn!(tool = %spec.name, "two tools have the same name for the model; the second is not offered");
            continue;
        }
        let validator = match (jsonschema::validator_for(&spec.parameters), &ready) {
            (Ok(validator), _) => validator,
            // A server's schema that does not compile: its arguments go
            // unchecked here, and the server checks them.
            (Err(e), Ready::Mcp { server, .. }) => {
                tracing::warn!(tool = %spec.name, %server, error = %e, "an MCP tool's input schema does not compile; its arguments are not checked");
                jsonschema::validator_for(&json!({})).map_err(|e| {
                    SkillError::new(
                        ErrorCode::SkillExecutionError,
                        e.to_string(),
                        "this is a bug",
                    )
                })?
            }
            (Err(e), _) => {
                return Err(SkillError::new(
                    ErrorCode::SkillExecutionError,
                    format!("tool `{}` has an unusable schema: {e}", spec.name),
                    "report it with the skill's manifest",
                ))
            }
        };
        tools.push(Tool {
            spec,
            ready,
            validator,
        });
    }
    Ok(tools)
}

/// Runs the loop of a skill with tools; `call` is its first step.
pub(crate) async fn run(
    exec: &Executor,
    ctx: &RunContext,
    req: &RunRequest,
    run: &Run<'_>,
    mut call: Call,
) -> Result<Answer, SkillError> {
    let skill = &*req.skill;
    let toolbox: &Toolbox = &skill.tools;
    let mcp = tokio::select! {
        mcp = mcp_tools(ctx, skill) => mcp?,
        // Interrupted while a server starts: nothing was said yet.
        _ = run.cancel.cancelled() => return Ok(Answer {
            text: String::new(),
            json: None,
            phases: Vec::new(),
            tool_steps: Vec::new(),
            interrupted: true,
        }),
    };
    let tools = resolve(skill, &req.tool_skills, mcp)?;
    call.tools = tools.iter().map(|t| t.spec.clone()).collect();
    // A step's text is shown only when it is the answer.
    call.streams_answer = false;
    let base = call.id.clone();
    let mut phases: Vec<PhaseResult> = Vec::new();
    let mut steps: Vec<ToolStep> = Vec::new();
    let mut asked_again = false;
    // Calls made so far (tool and arguments) and what they returned: a
    // model that asks for the same call again gets the result it had and
    // must answer next (small models loop on a call they already made).
    let mut made: Vec<(String, Value, String)> = Vec::new();
    let mut must_answer = false;
    let answer = |text: String, json, phases, steps, interrupted| Answer {
        text,
        json,
        phases,
        tool_steps: steps,
        interrupted,
    };
    for step in 1..=toolbox.max_steps {
        call.id = format!("{base}-{step}");
        call.tool_choice = if must_answer {
            ToolChoice::None
        } else if step == 1 && toolbox.first_call_required {
            ToolChoice::Required
        } else {
            ToolChoice::Auto
        };
        run.emitter.emit(ExecEvent::PhaseStarted {
            id: call.id.clone(),
            name: format!("{} (step {step})", call.name),
            model: call.spec.clone(),
        });
        let result = call_with_retries(run, &call)
            .await
            .map_err(|failed| provider_error(&failed, &call, false))?;
        run.emitter.emit(ExecEvent::PhaseFinished(result.clone()));
        phases.push(result.clone());
        if result.interrupted() {
            return Ok(answer(result.text, None, phases, steps, true));
        }
        if result.tool_calls.is_empty() {
            let json = match &call.output {
                None => None,
                Some(schema) => match schema.check(&result.text) {
                    Ok(json) => Some(json),
                    Err(invalid) if !asked_again && step < toolbox.max_steps => {
                        asked_again = true;
                        call.messages
                            .push(ChatMessage::new("assistant", result.text.clone()));
                        call.messages
                            .push(ChatMessage::new("user", schema.retry_message(&invalid)));
                        continue;
                    }
                    Err(invalid) => return Err(invalid.into_error("the answer", &result.text)),
                },
            };
            if json.is_none() {
                run.emitter.emit(ExecEvent::Text {
                    phase: call.id.clone(),
                    text: result.text.clone(),
                });
            }
            return Ok(answer(result.text, json, phases, steps, false));
        }
        call.messages.push(ChatMessage::assistant_calls(
            result.text.clone(),
            result.tool_calls.clone(),
        ));
        for tool_call in &result.tool_calls {
            if run.cancel.is_cancelled() {
                break;
            }
            run.emitter.emit(ExecEvent::ToolCalled {
                step,
                call_id: tool_call.id.clone(),
                tool: tool_call.name.clone(),
                arguments: tool_call.arguments.clone(),
            });
            let started = Instant::now();
            let earlier = made
                .iter()
                .find(|(tool, args, _)| *tool == tool_call.name && *args == tool_call.arguments);
            let (ok, text) = match earlier {
                Some((_, _, result)) => {
                    must_answer = true;
                    (
                        true,
                        format!("(You made this call already; its result was:)\n{result}\nAnswer with it now."),
                    )
                }
                None => {
                    let (ok, text) = invoke(exec, ctx, req, run, &tools, tool_call).await;
                    let text = cap(text, RESULT_BYTES);
                    // Only a result is remembered: a failed call may be tried again.
                    if ok {
                        made.push((
                            tool_call.name.clone(),
                            tool_call.arguments.clone(),
                            text.clone(),
                        ));
                    }
                    (ok, text)
                }
            };
            let record = ToolStep {
                step,
                call_id: tool_call.id.clone(),
                tool: tool_call.name.clone(),
                arguments: tool_call.arguments.clone(),
                ok,
                result: text.clone(),
                elapsed: started.elapsed(),
            };
            run.emitter.emit(ExecEvent::ToolFinished(record.clone()));
            steps.push(record);
            call.messages
                .push(ChatMessage::tool_result(tool_call, text));
        }
        if run.cancel.is_cancelled() {
            return Ok(answer(String::new(), None, phases, steps, true));
        }
    }
    if call.output.is_some() {
        return Err(SkillError::new(
            ErrorCode::ValidationError,
            format!(
                "the tool loop stopped after {} model calls without an answer for its output schema",
                toolbox.max_steps
            ),
            "raise `max_steps`, or give the model fewer tools to choose from",
        ));
    }
    // The answer stays empty (a conversation keeps no turn of it); the
    // note says why, and the calls are kept in `tool_steps`.
    run.emitter.emit(ExecEvent::Output {
        phase: call.id.clone(),
        stream: "stderr".into(),
        text: format!(
            "(no answer: the tool loop stopped after {} model calls, its `max_steps`; the calls made are kept above)\n",
            toolbox.max_steps
        ),
    });
    Ok(answer(String::new(), None, phases, steps, false))
}

/// Runs one call the model asked for: `(ok, result for the model)`.
async fn invoke(
    exec: &Executor,
    ctx: &RunContext,
    req: &RunRequest,
    run: &Run<'_>,
    tools: &[Tool],
    call: &ToolCall,
) -> (bool, String) {
    let Some(tool) = tools.iter().find(|t| t.spec.name == call.name) else {
        let names: Vec<&str> = tools.iter().map(|t| t.spec.name.as_str()).collect();
        return (
            false,
            format!(
                "error: there is no tool named `{}`; the tools are: {}",
                call.name,
                names.join(", ")
            ),
        );
    };
    if let Some(text) = call.arguments.get(UNPARSED) {
        return (
            false,
            format!("error: the arguments are not a JSON object: {text}"),
        );
    }
    let errors: Vec<String> = tool
        .validator
        .iter_errors(&call.arguments)
        .take(3)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect();
    if !errors.is_empty() {
        return (
            false,
            format!("error: invalid arguments: {}", errors.join("; ")),
        );
    }
    let timeout = req.skill.tools.tool_timeout;
    let work = async {
        match &tool.ready {
            Ready::Skill(skill) => call_skill(exec, ctx, req, run, skill, &call.arguments).await,
            Ready::Script(path) => call_script(ctx, req, run, path, &call.arguments, timeout).await,
            Ready::References(dir) => read_reference(dir, &call.arguments).await,
            Ready::Mcp { server, tool } => call_mcp(ctx, run, server, tool, &call.arguments).await,
        }
    };
    match tokio::time::timeout(timeout + Duration::from_secs(1), work).await {
        Ok(done) => done,
        Err(_) => (
            false,
            format!(
                "error: the tool did not finish within {} s",
                timeout.as_secs()
            ),
        ),
    }
}
