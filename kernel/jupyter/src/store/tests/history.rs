//! History packed into chunks: few keys however many cells, every entry
//! still read back in order, rewrites and old stores handled.

use skillkernel_protocol::content::{HistAccessType, HistoryRequest};

use super::{config, record};
use crate::store::codec::{self, HISTORY_GROUP};
use crate::store::Store;

fn lines(entries: &[crate::history::HistoryEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.line).collect()
}

fn tail(n: usize) -> HistoryRequest {
    let mut req = HistoryRequest::range(0, 0, None);
    req.hist_access_type = HistAccessType::Tail;
    req.n = Some(n);
    req
}

#[test]
fn ten_thousand_cells_take_a_hundred_keys_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&config(&dir)).unwrap();
    for line in 1..=10_000u64 {
        store
            .put_history(1, line, &record(&format!("cell {line}"), None, None))
            .unwrap();
        // The output arrives after the input, as a cell finishes.
        store
            .put_history(1, line, &record(&format!("cell {line}"), Some("ok"), None))
            .unwrap();
    }
    assert!(
        store.history.len() <= HISTORY_GROUP as usize,
        "only the current group is loose: {}",
        store.history.len()
    );
    assert_eq!(store.history_chunks.len(), 10_000 / HISTORY_GROUP as usize);
    assert_eq!(store.count_history(), 10_000);

    let all = store
        .select_history(&HistoryRequest::range(1, 1, None), 1)
        .unwrap();
    assert_eq!(lines(&all), (1..=10_000).collect::<Vec<_>>());
    assert!(all.iter().all(|e| e.output.as_deref() == Some("ok")));
    let across = store
        .select_history(&HistoryRequest::range(1, 126, Some(131)), 1)
        .unwrap();
    assert_eq!(lines(&across), vec![126, 127, 128, 129, 130]);
    let newest = store.select_history(&tail(300), 1).unwrap();
    assert_eq!(lines(&newest), (9_701..=10_000).collect::<Vec<_>>());

    // A late rewrite of a sealed line lands in its chunk, counted once.
    store
        .put_history(1, 5, &record("cell 5", Some("late"), None))
        .unwrap();
    let five = store
        .select_history(&HistoryRequest::range(1, 5, Some(6)), 1)
        .unwrap();
    assert_eq!(five[0].output.as_deref(), Some("late"));
    assert_eq!(store.count_history(), 10_000);
    store.flush().unwrap();
    drop(store);

    let (store, restored) = Store::open(&config(&dir)).unwrap();
    assert_eq!(restored.history_total, 10_000);
    assert_eq!(
        lines(&restored.history),
        (9_001..=10_000).collect::<Vec<_>>()
    );
    assert_eq!(store.history.len(), 0, "the last group was sealed at start");
}

#[test]
fn a_store_written_a_key_per_entry_is_packed_at_open_and_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(&config(&dir)).unwrap();
        // Written as stores before chunks were: every entry loose.
        for session in 1..=2 {
            for line in 1..=700u64 {
                let input = format!("cell {session}/{line}");
                store
                    .history
                    .insert(
                        codec::history_key(session, line),
                        record(&input, None, None).encode(),
                    )
                    .unwrap();
            }
        }
        // Nor did they keep a count.
        store
            .meta
            .remove(crate::store::meta::HISTORY_COUNT)
            .unwrap();
        store.flush().unwrap();
    }
    let (store, restored) = Store::open(&config(&dir)).unwrap();
    assert_eq!(restored.history_session, 3);
    assert_eq!(
        restored.history_total, 1400,
        "counted once, without the count"
    );
    assert_eq!(
        restored.history.first().map(|e| (e.session, e.line)),
        Some((1, 401))
    );
    assert_eq!(
        restored.history.last().map(|e| (e.session, e.line)),
        Some((2, 700))
    );
    assert_eq!(store.history.len(), 0);
    let early = store
        .select_history(&HistoryRequest::range(-2, 1, Some(4)), 3)
        .unwrap();
    let inputs: Vec<&str> = early.iter().map(|e| e.input.as_str()).collect();
    assert_eq!(inputs, vec!["cell 1/1", "cell 1/2", "cell 1/3"]);
}

#[test]
fn large_entries_spread_over_several_chunks_of_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&config(&dir)).unwrap();
    let big = "x".repeat(100 << 10);
    for line in 1..=HISTORY_GROUP {
        store
            .put_history(1, line, &record(&format!("{line}{big}"), None, None))
            .unwrap();
    }
    let chunks = store.history_chunks.len();
    assert!(chunks > 1, "group 0 in {chunks} chunk(s)");
    let all = store
        .select_history(&HistoryRequest::range(1, 1, None), 1)
        .unwrap();
    assert_eq!(lines(&all), (1..=HISTORY_GROUP).collect::<Vec<_>>());
    assert!(all.iter().all(|e| e.input.len() > big.len()));
}

#[test]
fn after_a_write_failure_older_history_is_still_read_from_the_store() {
    use crate::history::HistoryEntry;
    use crate::store::{Persistence, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let (persistence, _) = Persistence::open(Some(&config(&dir)));
    for line in 1..=1500u64 {
        let input = format!("cell {line}");
        persistence.write(|store| store.put_history(1, line, &record(&input, None, None)));
    }
    // The disk fills: the session carries on in memory from here.
    persistence.write(|_| {
        Err(StoreError::Write {
            path: dir.path().into(),
            source: sled::Error::Io(std::io::Error::other("No space left on device")),
        })
    });
    assert!(!persistence.holds_history() && persistence.reads_history());
    // What memory holds, newest first: the last 1100 lines, of which the
    // last 100 came after the failure.
    let memory: Vec<HistoryEntry> = (501..=1600u64)
        .rev()
        .map(|line| HistoryEntry {
            session: 1,
            line,
            input: format!("cell {line}"),
            output: (line > 1500).then(|| "in memory only".into()),
            artifact: None,
        })
        .collect();
    let all = persistence
        .select_history(&HistoryRequest::range(1, 1, None), 1, memory.clone())
        .expect("the store is still read");
    assert_eq!(lines(&all), (1..=1600).collect::<Vec<_>>());
    assert_eq!(all[1599].output.as_deref(), Some("in memory only"));
    let newest = persistence
        .select_history(&tail(3), 1, memory)
        .expect("the store is still read");
    assert_eq!(lines(&newest), vec![1598, 1599, 1600]);
}
