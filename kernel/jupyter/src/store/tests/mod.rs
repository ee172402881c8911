//! Tests of the session store through its public doors: open, write,
//! reopen.

mod history;

use std::time::{Duration, Instant};

use serde_json::json;

use super::codec::{self, HistoryRecord};
use super::*;

fn config(dir: &tempfile::TempDir) -> PersistConfig {
    PersistConfig::new(dir.path(), "kernel-test")
}

fn record(input: &str, output: Option<&str>, artifact: Option<ArtifactId>) -> HistoryRecord {
    HistoryRecord {
        input: input.into(),
        output: output.map(Into::into),
        artifact,
    }
}

#[test]
fn a_reopened_store_continues_count_history_variables_conversation_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x\n".repeat(3000);
    {
        let (store, restored) = Store::open(&config(&dir)).unwrap();
        assert_eq!(restored.history_session, 1);
        assert_eq!(restored.execution_count, 0);
        let id = store.put_artifact(big.as_bytes()).unwrap();
        store.set_execution_count(2).unwrap();
        store
            .put_history(1, 1, &record("%set x = 3", None, None))
            .unwrap();
        store
            .put_history(1, 2, &record("!seq", Some("x\nx\n"), Some(id)))
            .unwrap();
        store.set_variable("x", &json!(3)).unwrap();
        store.put_turn(0, "user", "hi").unwrap();
        store.put_turn(1, "assistant", "hello").unwrap();
        store.set_current_model(Some("tiny@candle")).unwrap();
        store.flush().unwrap();
    }
    let (store, restored) = Store::open(&config(&dir)).unwrap();
    assert_eq!(restored.history_session, 2, "each start is a new session");
    assert_eq!(restored.execution_count, 2, "the count carries on");
    assert!(!restored.fresh_start);
    let lines: Vec<(i64, u64, &str)> = restored
        .history
        .iter()
        .map(|e| (e.session, e.line, e.input.as_str()))
        .collect();
    assert_eq!(lines, vec![(1, 1, "%set x = 3"), (1, 2, "!seq")]);
    let id = restored.history[1].artifact.expect("artifact id kept");
    assert_eq!(store.get_artifact(&id).unwrap(), big.as_bytes());
    assert_eq!(restored.variables.get("x"), Some(&json!(3)));
    let turns: Vec<(&str, &str)> = restored
        .conversation
        .iter()
        .map(|t| (t.role.as_str(), t.content.as_str()))
        .collect();
    assert_eq!(turns, vec![("user", "hi"), ("assistant", "hello")]);
    assert_eq!(restored.current_model.as_deref(), Some("tiny@candle"));
    assert_eq!(restored.skipped, 0);
}

#[test]
fn the_same_output_is_stored_once_and_compressed_only_above_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.compress_threshold_bytes = 1000;
    let (store, _) = Store::open(&cfg).unwrap();
    let large = "repeated output line\n".repeat(100);
    let first = store.put_artifact(large.as_bytes()).unwrap();
    let again = store.put_artifact(large.as_bytes()).unwrap();
    assert_eq!(first, again);
    let (count, bytes) = store.artifact_stats();
    assert_eq!(count, 1, "content-addressed: stored once");
    let stored = store.artifacts.get(first.as_bytes()).unwrap().unwrap();
    assert_eq!(bytes, stored.len() as u64);
    assert!(artifacts::is_compressed(&stored));

    let small = "y".repeat(1000);
    let id = store.put_artifact(small.as_bytes()).unwrap();
    let stored = store.artifacts.get(id.as_bytes()).unwrap().unwrap();
    assert!(
        !artifacts::is_compressed(&stored),
        "not above the threshold"
    );
    assert_eq!(store.get_artifact(&id).unwrap(), small.as_bytes());
    assert_eq!(store.artifact_stats().0, 2);
}

#[test]
fn unreadable_records_are_skipped_and_the_rest_restored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(&config(&dir)).unwrap();
        store
            .put_history(1, 1, &record("good", Some("ok"), None))
            .unwrap();
        // A record from a future version, a truncated one, a bad key.
        store
            .history
            .insert(codec::history_key(1, 2), &[9u8, 0, 0][..])
            .unwrap();
        store
            .history
            .insert(codec::history_key(1, 3), &[1u8, 0, 0, 0, 0, 9][..])
            .unwrap();
        store.history.insert(b"short", &b"x"[..]).unwrap();
        store.variables.insert("bad", &b"{not json"[..]).unwrap();
        store.set_variable("good", &json!("v")).unwrap();
        store
            .conversation
            .insert(0u64.to_be_bytes(), &[1u8][..])
            .unwrap();
        store
            .meta
            .insert(meta::EXECUTION_COUNT, &b"??"[..])
            .unwrap();
        store
            .meta
            .insert(meta::CURRENT_MODEL, &[0xffu8][..])
            .unwrap();
        let id = store.put_artifact("z".repeat(5000).as_bytes()).unwrap();
        let mut damaged = store
            .artifacts
            .get(id.as_bytes())
            .unwrap()
            .unwrap()
            .to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        store.artifacts.insert(id.as_bytes(), damaged).unwrap();
        store
            .put_history(1, 4, &record("big", None, Some(id)))
            .unwrap();
        store.flush().unwrap();
    }
    let (store, restored) = Store::open(&config(&dir)).unwrap();
    let inputs: Vec<&str> = restored.history.iter().map(|e| e.input.as_str()).collect();
    assert_eq!(inputs, vec!["good", "big"]);
    assert_eq!(restored.variables.keys().collect::<Vec<_>>(), vec!["good"]);
    assert!(restored.conversation.is_empty());
    assert_eq!(
        restored.execution_count, 0,
        "an unreadable count reads as 0"
    );
    assert_eq!(restored.current_model, None);
    assert_eq!(restored.skipped, 7);
    let id = restored.history[1].artifact.unwrap();
    assert!(matches!(
        store.get_artifact(&id),
        Err(StoreError::BadArtifact { .. })
    ));
}

#[test]
fn skill_metrics_and_breakers_come_back_an_unreadable_one_is_skipped_and_fresh_start_drops_them() {
    use skillkernel_skills::exec::{SavedBreaker, SavedSkill};
    let dir = tempfile::tempdir().unwrap();
    let saved = SavedSkill {
        metrics: None,
        breaker: Some(SavedBreaker {
            failures: 3,
            opened_at_unix_ms: Some(1_700_000_000_000),
            times_opened: 1,
            threshold: 3,
            recovery_ms: 30_000,
        }),
    };
    {
        let (store, _) = Store::open(&config(&dir)).unwrap();
        store.put_skill_state("flaky", &saved).unwrap();
        store
            .put_skill_state("gone", &SavedSkill::default())
            .unwrap();
        store.clear_skill_state("gone").unwrap();
        store
            .skill_state
            .insert("broken", &b"{not json"[..])
            .unwrap();
        store.flush().unwrap();
    }
    {
        let (store, restored) = Store::open(&config(&dir)).unwrap();
        assert_eq!(
            restored.skill_states.len(),
            1,
            "{:?}",
            restored.skill_states
        );
        assert_eq!(restored.skill_states["flaky"], saved);
        assert_eq!(restored.skipped, 1, "the unreadable record is left out");
        store.mark_fresh_start().unwrap();
    }
    let (_, restored) = Store::open(&config(&dir)).unwrap();
    assert!(
        restored.skill_states.is_empty(),
        "a client restart starts fresh"
    );
}

#[test]
fn conversation_skill_turns_come_back_in_order_per_skill_and_a_clear_or_fresh_start_drops_them() {
    use skillkernel_providers::ChatMessage;
    let dir = tempfile::tempdir().unwrap();
    let turn = |role: &str, text: &str| ChatMessage::new(role, text);
    {
        let (store, _) = Store::open(&config(&dir)).unwrap();
        // Twelve turns: index 10 must sort after 9 (big-endian keys).
        let chat: Vec<ChatMessage> = (0..12)
            .map(|i| {
                turn(
                    if i % 2 == 0 { "user" } else { "assistant" },
                    &i.to_string(),
                )
            })
            .collect();
        store.put_skill_turns("chat", 0, &chat[..2]).unwrap();
        store.put_skill_turns("chat", 2, &chat[2..]).unwrap();
        // A skill whose name is the other's prefix keeps its own turns.
        store
            .put_skill_turns("ch", 0, &[turn("user", "other")])
            .unwrap();
        store
            .put_skill_turns("gone", 0, &[turn("user", "x")])
            .unwrap();
        store.clear_skill_conversation("gone").unwrap();
        store.flush().unwrap();
    }
    {
        let (store, restored) = Store::open(&config(&dir)).unwrap();
        let chat: Vec<&str> = restored.skill_conversations["chat"]
            .iter()
            .map(|t| t.content.as_str())
            .collect();
        let expected: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        assert_eq!(chat, expected);
        assert_eq!(restored.skill_conversations["ch"][0].content, "other");
        assert!(!restored.skill_conversations.contains_key("gone"));
        assert_eq!(restored.skipped, 0);
        store.mark_fresh_start().unwrap();
    }
    let (_, restored) = Store::open(&config(&dir)).unwrap();
    assert!(
        restored.skill_conversations.is_empty(),
        "a client restart starts fresh"
    );
}

#[test]
fn a_fresh_start_mark_resets_the_session_but_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(&config(&dir)).unwrap();
        store.set_execution_count(2).unwrap();
        store
            .put_history(1, 2, &record("%set x = 3", None, None))
            .unwrap();
        store.set_variable("x", &json!(3)).unwrap();
        store.put_turn(0, "user", "hi").unwrap();
        store.set_current_model(Some("m")).unwrap();
        store.mark_fresh_start().unwrap();
    }
    {
        let (store, restored) = Store::open(&config(&dir)).unwrap();
        assert!(restored.fresh_start);
        assert_eq!(restored.execution_count, 0);
        assert!(restored.variables.is_empty());
        assert!(restored.conversation.is_empty());
        assert_eq!(restored.current_model, None);
        assert_eq!(restored.history_session, 2);
        assert_eq!(restored.history.len(), 1, "history survives a restart");
        store.set_execution_count(1).unwrap();
        store.flush().unwrap();
    }
    let (_, restored) = Store::open(&config(&dir)).unwrap();
    assert!(!restored.fresh_start, "the mark applies to one start only");
    assert_eq!(restored.execution_count, 1);
    assert_eq!(restored.history_session, 3);
}

#[test]
fn an_unwritable_state_dir_leaves_the_session_in_memory_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the state directory should be: even root
    // cannot create a directory under it.
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, "not a directory").unwrap();
    let cfg = PersistConfig::new(&blocker, "kernel-test");
    let (persistence, restored) = Persistence::open(Some(&cfg));
    assert!(restored.is_none());
    let status = persistence.status(1, 0, 0);
    assert!(!status.persisted);
    let reason = status.reason.unwrap();
    assert!(reason.contains(&blocker.display().to_string()), "{reason}");
    assert!(reason.contains("cannot create"), "{reason}");
    // Writes are dropped quietly; saving says why it cannot.
    persistence.write(|s| s.set_execution_count(1));
    assert!(matches!(
        persistence.save(),
        Err(StoreError::InMemory { .. })
    ));
}

#[test]
fn a_store_locked_by_another_opener_leaves_the_second_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let (first, restored) = Persistence::open(Some(&cfg));
    assert!(restored.is_some() && first.status(1, 0, 0).persisted);
    let (second, restored) = Persistence::open(Some(&cfg));
    assert!(restored.is_none());
    let status = second.status(1, 0, 0);
    assert!(!status.persisted);
    let reason = status.reason.unwrap();
    assert!(reason.contains("is locked by another process"), "{reason}");
    assert!(
        reason.contains(&cfg.session_dir().display().to_string()),
        "{reason}"
    );
    drop(first);
    let (third, _) = Persistence::open(Some(&cfg));
    assert!(
        third.status(1, 0, 0).persisted,
        "the lock goes with its holder"
    );
}

#[test]
fn changes_are_flushed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (persistence, _) = Persistence::open(Some(&config(&dir)));
    let all_saved = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while persistence.status(1, 0, 0).unsaved_changes > 0 {
            assert!(Instant::now() < deadline, "{what} never reached the disk");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    for n in 1..=20 {
        persistence.write(|s| s.set_execution_count(n));
    }
    all_saved("a burst of changes");
    // Once the flusher sleeps, one change must wake it.
    std::thread::sleep(Duration::from_millis(50));
    persistence.write(|s| s.set_execution_count(21));
    all_saved("a single change");
    assert!(persistence.save().is_ok());
}

#[test]
fn a_failed_flush_switches_to_memory_with_the_reason() {
    let failing = || {
        Err(StoreError::Flush {
            path: "/state/sessions/x".into(),
            source: sled::Error::Io(std::io::Error::other("No space left on device")),
        })
    };
    let (reported, seen) = std::sync::mpsc::channel();
    let flusher = flusher::Flusher::start(failing, move |e| {
        let _ = reported.send(e.to_string());
    })
    .unwrap();
    flusher.changed();
    let reason = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        reason.contains("/state/sessions/x") && reason.contains("No space"),
        "{reason}"
    );
}

#[test]
fn session_names_stay_inside_the_sessions_dir() {
    assert_eq!(dir_name("kernel-1234.abc"), "kernel-1234.abc");
    assert_eq!(dir_name("../../etc"), "_.._.._etc");
    assert_eq!(dir_name(".."), "_..");
    assert_eq!(dir_name(""), "_");
    assert_eq!(dir_name("a b/c"), "a_b_c");
}

/// Restoring a long session must be quick: a kernel restart to ready has
/// a 200 ms budget. Prints the time (run with `--nocapture`).
#[test]
fn ten_thousand_history_entries_restore_quickly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(&config(&dir)).unwrap();
        for line in 1..=10_000u64 {
            let output = format!("result of cell {line}\n").repeat(4);
            let input = format!("%set v{line} = {line}");
            store
                .put_history(1, line, &record(&input, Some(&output), None))
                .unwrap();
        }
        store.set_execution_count(10_000).unwrap();
        store.flush().unwrap();
    }
    let started = Instant::now();
    let (_, restored) = Store::open(&config(&dir)).unwrap();
    let took = started.elapsed();
    println!("restored 10,000 history entries in {took:?}");
    assert_eq!(restored.history_total, 10_000);
    let lines: Vec<u64> = restored.history.iter().map(|e| e.line).collect();
    let newest: Vec<u64> = (9_001..=10_000).collect();
    assert_eq!(lines, newest, "memory gets the newest 1000, in order");
    assert_eq!(restored.execution_count, 10_000);
    // Generous for an unoptimised build on a busy CI machine; the release
    // figure is in docs/operations.md.
    assert!(took < Duration::from_secs(1), "restore took {took:?}");
}

/// What memory let go of is still answered, from the store: ranges read
/// only their keys, tails and searches read back from the newest.
#[test]
fn the_store_answers_history_requests_memory_cannot() {
    use skillkernel_protocol::content::HistoryRequest;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&config(&dir)).unwrap();
    for session in 1..=2 {
        for line in 1..=3000u64 {
            let input = format!("cell {session}/{line}");
            store
                .put_history(session, line, &record(&input, None, None))
                .unwrap();
        }
    }
    // An undecodable entry inside the range (and inside a chunk) is left
    // out, not fatal.
    let key = codec::chunk_key(1, 0, 0);
    let chunk = store
        .history_chunks
        .get(key)
        .unwrap()
        .expect("group 0 sealed");
    let damaged: Vec<(u64, Vec<u8>)> = codec::decode_chunk(&chunk)
        .0
        .into_iter()
        .map(|(l, r)| (l, if l == 6 { vec![9, 0, 0] } else { r.to_vec() }))
        .collect();
    let damaged = codec::encode_chunk(damaged.iter().map(|(l, r)| (*l, &r[..])));
    store.history_chunks.insert(key, damaged).unwrap();
    let lines = |entries: Vec<crate::history::HistoryEntry>| -> Vec<(i64, u64)> {
        entries.iter().map(|e| (e.session, e.line)).collect()
    };

    let early = store
        .select_history(&HistoryRequest::range(1, 5, Some(8)), 2)
        .unwrap();
    assert_eq!(lines(early), vec![(1, 5), (1, 7)]);
    let previous = store
        .select_history(&HistoryRequest::range(-1, 2999, None), 2)
        .unwrap();
    assert_eq!(lines(previous), vec![(1, 2999), (1, 3000)]);
    assert!(store
        .select_history(&HistoryRequest::range(0, 9, Some(3)), 2)
        .unwrap()
        .is_empty());

    let found = store
        .select_history(&HistoryRequest::search("cell 1/1?".into(), None, false), 2)
        .unwrap();
    let expected: Vec<(i64, u64)> = (10..=19).map(|l| (1, l)).collect();
    assert_eq!(
        lines(found),
        expected,
        "oldest first, from the first session"
    );

    let mut tail = HistoryRequest::range(0, 0, None);
    tail.hist_access_type = skillkernel_protocol::content::HistAccessType::Tail;
    tail.n = Some(3002);
    let tail = lines(store.select_history(&tail, 2).unwrap());
    assert_eq!(
        (tail.len(), tail[0], tail[3001]),
        (3002, (1, 2999), (2, 3000))
    );
}

/// The history count is kept, not counted at each start, and a rewritten
/// entry (its output attached) is not counted twice.
#[test]
fn the_history_count_is_kept_across_starts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(&config(&dir)).unwrap();
        for line in 1..=1500u64 {
            store
                .put_history(1, line, &record("cell", None, None))
                .unwrap();
        }
        store
            .put_history(1, 1500, &record("cell", Some("out"), None))
            .unwrap();
        store.flush().unwrap();
    }
    let (store, restored) = Store::open(&config(&dir)).unwrap();
    assert_eq!(
        (restored.history_total, restored.history.len()),
        (1500, 1000)
    );
    store
        .put_history(2, 1, &record("next", None, None))
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let (_, restored) = Store::open(&config(&dir)).unwrap();
    assert_eq!(restored.history_total, 1501);
}
