//! Executor tests: skills built in code, run through a real providers'
//! `Registry` over the scripted provider.

mod conversation;
mod params;
mod resilience;
mod single;
mod structured;
mod tools;
mod workflow;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skillkernel_providers::scripted::ScriptedProvider;
use skillkernel_providers::{GenerationOptions, ModelsConfig, Registry};

use super::{ExecEvent, Executor, RunContext, RunOutput, RunRequest};
use crate::metrics::SkillMetrics;
use crate::model::{
    GenerationOverrides, Origin, ParamKind, Parameter, Phase, PromptSkill, Resilience, Routing,
    SkillBody, SkillFormat, SkillMeta, Source, WorkflowSkill,
};
use crate::{Skill, SkillError, Template};

pub(super) fn skill(name: &str, body: SkillBody) -> Skill {
    Skill {
        meta: SkillMeta::new(
            name,
            semver::Version::new(1, 0, 0),
            format!("{name} for tests"),
        ),
        parameters: Vec::new(),
        dependencies: Vec::new(),
        routing: Routing::default(),
        generation: GenerationOverrides::default(),
        resilience: Resilience {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..Resilience::default()
        },
        body,
        output: None,
        tools: Default::default(),
        source: Source {
            format: SkillFormat::Native,
            path: None,
            origin: Origin::Cell,
        },
    }
}

pub(super) fn template(source: &str) -> Template {
    Template::parse(source).unwrap()
}

pub(super) fn prompt_skill(name: &str, system: Option<&str>, user: &str) -> Skill {
    skill(
        name,
        SkillBody::Prompt(PromptSkill {
            system: system.map(template),
            template: template(user),
        }),
    )
}

pub(super) fn param(name: &str, kind: ParamKind) -> Parameter {
    Parameter {
        name: name.into(),
        kind,
        description: String::new(),
        required: false,
        default: None,
        pattern: None,
    }
}

/// A phase `id` reading `template`, after `depends_on`.
pub(super) fn phase(id: &str, template_source: &str, depends_on: &[&str]) -> Phase {
    Phase {
        id: id.into(),
        name: id.to_uppercase(),
        system: None,
        template: template(template_source),
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        routing: Routing::default(),
        generation: GenerationOverrides::default(),
        output: None,
    }
}

pub(super) fn workflow_skill(
    name: &str,
    phases: Vec<Phase>,
    max_parallel: usize,
    output: &str,
) -> Skill {
    skill(
        name,
        SkillBody::Workflow(WorkflowSkill {
            phases,
            max_parallel,
            output: output.into(),
        }),
    )
}

/// The session's model is `m`; profiles end on it.
pub(super) fn context(provider: &Arc<ScriptedProvider>) -> RunContext {
    let config = ModelsConfig {
        default: "m".into(),
        ..ModelsConfig::default()
    };
    RunContext {
        registry: Arc::new(Registry::new(vec![provider.clone()], config)),
        default_model: "m".into(),
        options: GenerationOptions::default(),
        sandbox: None,
        session: "test".into(),
        external: None,
    }
}

pub(super) fn executor() -> Executor {
    Executor::new(Arc::new(SkillMetrics::new()))
}

/// Runs `req`, collecting its events.
pub(super) async fn run(
    exec: &Executor,
    ctx: &RunContext,
    req: RunRequest,
) -> (Result<RunOutput, SkillError>, Vec<ExecEvent>) {
    let events = Mutex::new(Vec::new());
    let result = exec.run(ctx, req, |e| events.lock().unwrap().push(e)).await;
    (result, events.into_inner().unwrap())
}

/// The text pieces of `events`, joined.
pub(super) fn streamed(events: &[ExecEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ExecEvent::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_run_future_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let provider = ScriptedProvider::builder("scripted").build();
    let ctx = context(&provider);
    let exec = executor();
    let req = RunRequest::new(Arc::new(prompt_skill("s", None, "{{input}}")), "x");
    let future = exec.run(&ctx, req, |_| {});
    assert_send(&future);
}
