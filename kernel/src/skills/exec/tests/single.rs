//! Prompt, conversation and agent skills: one model call each.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use skillkernel_providers::scripted::ScriptedProvider;
use skillkernel_providers::{ChatMessage, ResponseCache};

use super::{context, executor, param, prompt_skill, run, skill, streamed, template};
use crate::skills::exec::{Args, ExecEvent, RunRequest};
use crate::skills::model::{
    AgentSkill, CommandSkill, ContextFiles, ConversationSkill, ParamKind, Routing, SkillBody,
};
use crate::skills::ErrorCode;

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
    }
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

fn reviewer(context: ContextFiles) -> Arc<crate::skills::Skill> {
    Arc::new(skill(
        "review",
        SkillBody::Conversation(ConversationSkill {
            system: template("You review code."),
            context,
        }),
    ))
}

fn workdir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_conversation_sends_context_files_history_and_input_and_returns_the_new_turns() {
    let dir = workdir(&[
        ("src/a.rs", "fn a() {}\n"),
        ("src/b.rs", "fn b() {}\n"),
        ("src/gen/c.rs", "generated"),
        ("README.md", "readme"),
    ]);
    let provider = ScriptedProvider::builder("scripted")
        .reply_with(|_| Ok("Looks fine.".into()))
        .build();
    let ctx = context(&provider);
    let exec = executor();
    let skill = reviewer(ContextFiles {
        include: vec!["src/**/*.rs".into(), "src/a.rs".into()],
        exclude: vec!["src/gen/**".into()],
        ..ContextFiles::default()
    });
    let mut req = RunRequest::new(skill, "Any bugs?");
    req.workdir = dir.path().to_path_buf();
    req.history = vec![msg("user", "Hi"), msg("assistant", "Hello")];
    let (out, _) = run(&exec, &ctx, req).await;
    let out = out.unwrap();
    let sent = &provider.calls()[0].messages;
    assert_eq!(
        sent[0].content,
        "You review code.\n\n# Context files\n\n## src/a.rs\n```\nfn a() {}\n```\n\n## src/b.rs\n```\nfn b() {}\n```\n"
    );
    assert_eq!(
        sent[1..],
        [
            msg("user", "Hi"),
            msg("assistant", "Hello"),
            msg("user", "Any bugs?")
        ]
    );
    assert_eq!(
        out.new_turns,
        [msg("user", "Any bugs?"), msg("assistant", "Looks fine.")]
    );
}

#[tokio::test]
async fn context_limits_name_the_limit_and_the_offending_file_or_count() {
    let dir = workdir(&[
        ("w/a.txt", "12345"),
        ("w/b.txt", "1234567890"),
        ("secret.txt", ""),
    ]);
    let work = dir.path().join("w");
    std::fs::write(work.join("c.bin"), [0xff, 0xfe, 0x00]).unwrap();
    let provider = ScriptedProvider::builder("scripted").build();
    let ctx = context(&provider);
    let exec = executor();
    let txt = |f: fn(&mut ContextFiles)| {
        let mut c = ContextFiles {
            include: vec!["*.txt".into()],
            ..ContextFiles::default()
        };
        f(&mut c);
        c
    };
    let cases = [
        (
            txt(|c| c.max_files = 1),
            "match 2 files, more than the limit of 1 (max_files)",
        ),
        (
            txt(|c| c.max_file_bytes = 8),
            "b.txt is 10 bytes, more than the limit of 8 (max_file_bytes)",
        ),
        (
            txt(|c| c.max_total_bytes = 12),
            "more than 12 bytes (max_total_bytes) by b.txt",
        ),
        (
            txt(|c| c.include = vec!["*.bin".into()]),
            "c.bin is not UTF-8",
        ),
        (
            txt(|c| c.include = vec!["../*.txt".into()]),
            "outside the working directory",
        ),
    ];
    for (limits, needle) in cases {
        let mut req = RunRequest::new(reviewer(limits), "?");
        req.workdir = work.clone();
        let (out, _) = run(&exec, &ctx, req).await;
        let e = out.unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
        assert!(
            e.message.contains(needle),
            "{needle:?} not in {}",
            e.message
        );
        assert!(!e.hint.is_empty());
    }
    // Excluded files do not count against the limits.
    let mut req = RunRequest::new(
        reviewer(txt(|c| {
            c.max_files = 1;
            c.exclude = vec!["b.*".into()];
        })),
        "?",
    );
    req.workdir = work;
    assert!(run(&exec, &ctx, req).await.0.is_ok());
    assert_eq!(provider.call_count(), 1);
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
async fn command_skills_are_refused_until_the_sandbox_exists() {
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
