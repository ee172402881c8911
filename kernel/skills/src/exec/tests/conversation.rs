//! Conversation skills: context files, history, new turns.

use std::sync::Arc;

use skillkernel_providers::scripted::ScriptedProvider;

use super::single::msg;
use super::{context, executor, run, skill, template};
use crate::exec::RunRequest;
use crate::model::{ContextFiles, ConversationSkill, SkillBody};
use crate::ErrorCode;

fn reviewer(context: ContextFiles) -> Arc<crate::Skill> {
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
