use harness::{run, Daemon};
use serde_json::json;
use skillctl::Target;

use super::T;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_inspection_and_history_requests() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    run(&mut client, "%set naive = 1").await;
    run(&mut client, "%set nature = 2").await;

    let code = "%get na";
    let reply = client
        .request(
            Target::Shell,
            "complete_request",
            json!({"code": code, "cursor_pos": 7}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(reply.content["matches"], json!(["naive", "nature"]));
    assert_eq!(reply.content["cursor_start"], 5);
    assert_eq!(reply.content["cursor_end"], 7);

    // Cursor positions count code points, not bytes.
    let code = "%get naïve %cl";
    let reply = client
        .request(
            Target::Shell,
            "complete_request",
            json!({"code": code, "cursor_pos": 14}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        reply.content["matches"],
        json!([]),
        "magics only start a line"
    );

    let reply = client
        .request(
            Target::Shell,
            "inspect_request",
            json!({"code": "%history", "cursor_pos": 3, "detail_level": 0}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(reply.content["found"], true);
    assert!(reply.content["data"]["text/markdown"]
        .as_str()
        .unwrap()
        .contains("%history"));

    let reply = client
        .request(Target::Shell, "history_request",
            json!({"output": false, "raw": true, "hist_access_type": "search", "pattern": "%set na*", "unique": true}), T)
        .await
        .unwrap();
    assert_eq!(reply.content["history"].as_array().unwrap().len(), 2);

    let reply = client
        .request(Target::Shell, "history_request",
            json!({"output": false, "raw": true, "hist_access_type": "range", "session": 0, "start": 2, "stop": 3}), T)
        .await
        .unwrap();
    assert_eq!(reply.content["history"][0][2], "%set nature = 2");
}

/// `%history -g PATTERN` searches `*PATTERN*` and `-g` alone lists
/// everything, as IPython's does; a `history_request` search keeps the
/// pattern as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_g_matches_anywhere_while_a_search_request_takes_its_glob_as_given() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    run(&mut client, "%set a = \"the marker here\"").await;
    run(&mut client, "%set b = 2").await;

    let found = run(&mut client, "%history -g marker").await;
    assert_eq!(found.status(), "ok", "{:?}", found.reply.content);
    let text = found.stream_text("stdout");
    assert!(text.contains("1: %set a = \"the marker here\""), "{text}");
    assert!(!text.contains("%set b = 2"), "{text}");

    let all = run(&mut client, "%history -g").await;
    assert_eq!(all.status(), "ok", "{:?}", all.reply.content);
    let text = all.stream_text("stdout");
    for input in ["%set a = ", "%set b = 2", "%history -g marker"] {
        assert!(text.contains(input), "{input} listed: {text}");
    }

    let search = |pattern: &str| json!({"output": false, "raw": true, "hist_access_type": "search", "pattern": pattern});
    let reply = client
        .request(Target::Shell, "history_request", search("marker"), T)
        .await
        .unwrap();
    assert_eq!(reply.content["history"], json!([]), "no implicit `*`");
    let reply = client
        .request(Target::Shell, "history_request", search("%set a*"), T)
        .await
        .unwrap();
    assert_eq!(
        reply.content["history"],
        json!([[1, 1, "%set a = \"the marker here\""]])
    );
}
