//! Workflow skills: the phase DAG, independent phases at the same time.
//!
//! A phase starts once every phase it depends on has finished, at most
//! `max_parallel` at once, ready phases in file order. It is rendered with
//! the outputs of the phases finished so far (its template can only name
//! its ancestors: checked at load; a phase with an output schema offers
//! its JSON answer's fields too) and called with its own routing and
//! generation settings, else the skill's, else the session's. The answer is
//! the `output` phase's text, streamed as it is generated. A failing phase
//! stops the others and the error names it; an interrupt stops them too
//! and keeps what finished.
//!
//! All phases run as futures of the one task that runs the skill, so the
//! event callback needs no `'static` bound and a dropped run stops them.

use std::collections::BTreeMap;

use futures::stream::{FuturesUnordered, StreamExt};
use skillkernel_providers::GenerationOptions;
use tracing::Instrument;

use super::call::{Call, Run};
use super::events::{Answer, ExecEvent, PhaseResult};
use super::phase_value::phase_value;
use super::prompt::{message, Values};
use super::structured;
use crate::model::{Phase, WorkflowSkill};
use crate::{Skill, SkillError};

/// The model specifier and options of one call: the phase's, else the
/// skill's, else the session's.
pub(crate) fn settings(
    skill: &Skill,
    phase: Option<&Phase>,
    default_model: &str,
    defaults: &GenerationOptions,
) -> (String, GenerationOptions) {
    let (routing, generation) = match phase {
        Some(p) => (
            p.routing.or(&skill.routing),
            p.generation.or(&skill.generation),
        ),
        None => (skill.routing.clone(), skill.generation.clone()),
    };
    let spec = routing.spec().unwrap_or(default_model).to_owned();
    let mut options = defaults.clone();
    if let Some(max_tokens) = generation.max_tokens {
        options.max_tokens = max_tokens;
    }
    if let Some(temperature) = generation.temperature {
        options.temperature = temperature;
    }
    (spec, options)
}

pub(crate) async fn run(
    run: &Run<'_>,
    skill: &Skill,
    workflow: &WorkflowSkill,
    values: &Values<'_>,
    default_model: &str,
    defaults: &GenerationOptions,
) -> Result<Answer, SkillError> {
    let phases = &workflow.phases;
    let limit = workflow.max_parallel.max(1);
    let mut outputs: BTreeMap<String, minijinja::Value> = BTreeMap::new();
    let mut started = vec![false; phases.len()];
    let mut finished: Vec<(usize, PhaseResult)> = Vec::with_capacity(phases.len());
    let mut running = FuturesUnordered::new();
    let mut interrupted = false;
    loop {
        for (index, phase) in phases.iter().enumerate() {
            if running.len() >= limit || interrupted || run.cancel.is_cancelled() {
                break;
            }
            let ready = !started[index] && phase.depends_on.iter().all(|d| outputs.contains_key(d));
            if !ready {
                continue;
            }
            started[index] = true;
            let call = phase_call(
                skill,
                workflow,
                phase,
                values,
                &outputs,
                default_model,
                defaults,
            )?;
            run.emitter.emit(ExecEvent::PhaseStarted {
                id: call.id.clone(),
                name: call.name.clone(),
                model: call.spec.clone(),
            });
            let span = phase_span(&call);
            running.push(
                async move {
                    let result = structured::answer(run, &call, true).await;
                    (index, call, result)
                }
                .instrument(span),
            );
        }
        let Some((index, call, result)) = running.next().await else {
            break;
        };
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                run.cancel.cancel();
                return Err(error);
            }
        };
        run.emitter.emit(ExecEvent::PhaseFinished(result.clone()));
        if result.interrupted() {
            interrupted = true;
        } else {
            outputs.insert(
                call.id.clone(),
                phase_value(&result.text, result.json.as_ref()),
            );
        }
        finished.push((index, result));
    }
    finished.sort_by_key(|(index, _)| *index);
    let phases: Vec<PhaseResult> = finished.into_iter().map(|(_, r)| r).collect();
    let output = phases.iter().find(|p| p.id == workflow.output);
    let text = output.map(|p| p.text.clone()).unwrap_or_default();
    let json = output.and_then(|p| p.json.clone());
    Ok(Answer {
        text,
        json,
        tool_steps: Vec::new(),
        phases,
        interrupted: interrupted || run.cancel.is_cancelled(),
    })
}

/// The span a phase's model call (with its retries) runs in.
pub(crate) fn phase_span(call: &Call) -> tracing::Span {
    tracing::info_span!("phase", phase = %call.id, model = %call.spec)
}

fn phase_call(
    skill: &Skill,
    workflow: &WorkflowSkill,
    phase: &Phase,
    values: &Values<'_>,
    outputs: &BTreeMap<String, minijinja::Value>,
    default_model: &str,
    defaults: &GenerationOptions,
) -> Result<Call, SkillError> {
    let place = format!("phase `{}`", phase.id);
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &phase.system {
        let text = values.render(system, outputs, &format!("{place}, system prompt"))?;
        messages.push(message("system", text));
    }
    messages.push(message(
        "user",
        values.render(&phase.template, outputs, &place)?,
    ));
    if let Some(schema) = &phase.output {
        structured::instruct(&mut messages, schema);
    }
    let (spec, options) = settings(skill, Some(phase), default_model, defaults);
    Ok(Call {
        id: phase.id.clone(),
        name: phase.name.clone(),
        spec,
        messages,
        options,
        streams_answer: phase.id == workflow.output,
        output: phase.output.clone(),
        tools: Vec::new(),
        tool_choice: Default::default(),
    })
}
