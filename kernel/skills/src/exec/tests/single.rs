//! Prompt and agent skills, and what every single-call run shares:
//! routing, the cache, interrupts, refused kinds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use skillkernel_providers::scripted::ScriptedProvider;
use skillkernel_providers::{ChatMessage, ResponseCache};

use super::{context, executor, param, prompt_skill, run, skill, streamed};
use crate::exec::{Args, ExecEvent, RunRequest};
use crate::model::{AgentSkill, CommandSkill, ParamKind, Routing, SkillBody};
use crate::ErrorCode;

pub(super) fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

#[tokio::test]
async fn a_prompt_skill_sends_its_rendered_messages_and_streams_the_answer() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m", "big"])
        .reply_with(|_| Ok("Bonjour tout le monde".into()))
        .build();
    let ctx = context(&provider);
    let exec = executor();
    let mut s = prompt_skill(
        "translate",
        Some("You translate into {{ language }}."),
        "Translate:\n{{ input }}{% if formal %} (formal){% endif %}",
    );
    s.parameters = vec![
        param("language", ParamKind::String),
        param("formal", ParamKind::Bool),
    ];
    s.routing.model = Some("big".into());
    s.generation.max_tokens = Some(64);
    let mut req = RunRequest::new(Arc::new(s), "Hello world");
    req.args = Args::from_tokens(["language=French"]).unwrap();
    let (out, events) = run(&exec, &ctx, req).await;
    let out = out.unwrap();

    let calls = provider.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].model, "big");
    assert_eq!(
        calls[0].messages,
        [
            msg("system", "You translate into French."),
            msg("user", "Translate:\nHello world")
        ]
    );
    assert_eq!(calls[0].options.max_tokens, 64);
    assert_eq!(calls[0].options.temperature, ctx.options.temperature);

    assert_eq!(out.text, "Bonjour tout le monde");
    assert_eq!(streamed(&events), out.text);
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, ExecEvent::Text { .. }))
            .count()
            > 1
    );
    assert!(
        matches!(&events[0], ExecEvent::PhaseStarted { id, model, .. } if id == "prompt" && model == "big")
    );
    let Some(ExecEvent::PhaseFinished(done)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!((done.model.as_str(), done.attempts), ("big@scripted", 1));
    assert_eq!(out.phases, std::slice::from_ref(done));
    assert_eq!((out.attempts, out.interrupted), (1, false));
    assert_eq!(out.totals.completion_tokens, 4);
    assert!(out.new_turns.is_empty());
}

#[tokio::test]
async fn unrouted_skills_use_the_session_model_and_profiles_are_reported() {
    let provider = ScriptedProvider::builder("scripted").models(&["m"]).build();
    let ctx = context(&provider);
    let exec = executor();
    let plain = Arc::new(prompt_skill("echo", None, "{{input}}"));
    let (out, _) = run(&exec, &ctx, RunRequest::new(plain, "a")).await;
    assert_eq!(out.unwrap().phases[0].model, "m@scripted");

    let mut cheap = prompt_skill("echo-cheap", None, "{{input}}");
    cheap.routing = Routing {
        profile: Some("cheap".into()),
        model: None,
    };
    let (out, _) = run(&exec, &ctx, RunRequest::new(Arc::new(cheap), "a")).await;
    let phase = &out.unwrap().phases[0];
    assert_eq!(
        (phase.model.as_str(), phase.profile.as_deref()),
        ("m@scripted", Some("cheap"))
    );
}

#[tokio::test]
async fn deterministic_runs_are_answered_from_the_cache_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let provider = ScriptedProvider::builder("scripted").build();
    let mut ctx = context(&provider);
    let cache = ResponseCache::open(dir.path(), Duration::from_secs(60)).unwrap();
    ctx.registry = Arc::new(
        skillkernel_providers::Registry::new(vec![provider.clone()], ctx.registry.config().clone())
            .with_cache(cache),
    );
    let exec = executor();
    let s = Arc::new(prompt_skill("echo", None, "say {{input}}"));
    let (first, _) = run(&exec, &ctx, RunRequest::new(s.clone(), "hi")).await;
    let (second, _) = run(&exec, &ctx, RunRequest::new(s, "hi")).await;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.text, second.text);
    assert!(!first.phases[0].cached && second.phases[0].cached);
    assert_eq!(second.totals.cached_calls, 1);
    assert_eq!(provider.call_count(), 1);
    assert_eq!(exec.metrics().skill("echo").unwrap().cache_hits, 1);
}

#[tokio::test]
async fn an_agent_skill_sends_its_instructions_and_resources_as_the_system_prompt() {
    let provider = ScriptedProvider::builder("scripted").build();
    let ctx = context(&provider);
    let exec = executor();
    let mut s = skill(
        "pdf-tools",
        SkillBody::Agent(AgentSkill {
            instructions: "# PDF tools\nUse the scripts.\n".into(),
            resources: vec![
                PathBuf::from("scripts/split.py"),
                PathBuf::from("references/api.md"),
            ],
        }),
    );
    s.source.path = Some(PathBuf::from("/skills/pdf-tools/SKILL.md"));
    let (out, _) = run(&exec, &ctx, RunRequest::new(Arc::new(s), "split a.pdf")).await;
    assert_eq!(out.unwrap().phases[0].id, "agent");
    assert_eq!(
        provider.calls()[0].messages,
        [
            msg(
                "system",
                "# PDF tools\nUse the scripts.\n\n# Resources\n\nThese files come with the skill, in /skills/pdf-tools:\n- scripts/split.py\n- references/api.md\n"
            ),
            msg("user", "split a.pdf")
        ]
    );
}

#[tokio::test]
async fn command_skills_are_refused_by_a_kernel_without_a_sandbox() {
    let provider = ScriptedProvider::builder("scripted").build();
    let ctx = context(&provider);
    let exec = executor();
    let s = skill(
        "lint",
        SkillBody::Command(CommandSkill {
            command: "ruff".into(),
            args: Vec::new(),
            env: Default::default(),
            fallback: None,
            policy: Default::default(),
        }),
    );
    let (out, _) = run(&exec, &ctx, RunRequest::new(Arc::new(s), "")).await;
    let e = out.unwrap_err();
    assert_eq!(e.code, ErrorCode::SkillExecutionError);
    assert!(
        e.message.contains("command skill") && e.message.contains("sandbox"),
        "{}",
        e.message
    );
    assert_eq!(provider.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_keeps_the_partial_answer() {
    let provider = ScriptedProvider::builder("scripted")
        .reply_with(|_| Ok("one two three four five six".into()))
        .piece_chars(4)
        .piece_delay(Duration::from_millis(50))
        .build();
    let ctx = context(&provider);
    let exec = executor();
    let req = RunRequest::new(Arc::new(prompt_skill("echo", None, "{{input}}")), "x");
    let cancel = req.cancel.clone();
    let mut pieces = 0;
    let out = exec
        .run(&ctx, req, |e| {
            if matches!(e, ExecEvent::Text { .. }) {
                pieces += 1;
                if pieces == 2 {
                    cancel.cancel();
                }
            }
        })
        .await
        .unwrap();
    assert!(out.interrupted);
    assert_eq!(out.text, "one two ");
    assert_eq!(out.phases[0].finish_reason, "cancelled");
    assert_eq!(exec.breaker("echo").consecutive_failures, 0);
}
