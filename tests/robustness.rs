//! Bad input never takes the kernel down: wrongly signed, truncated,
//! non-JSON, oversized and shapeless messages are logged and dropped, and
//! the next good request is answered.

use std::time::Duration;

use bytes::Bytes;
use harness::{run, Daemon};
use serde_json::json;
use skillctl::Target;
use skillkernel_protocol::{Header, Message, Signer, DELIMITER};

fn good_frames(session: &str, signer: &Signer) -> Vec<Bytes> {
    Message::new(Header::new("kernel_info_request", session, "t"), json!({})).encode(signer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_logged_dropped_and_the_kernel_answers_the_next() {
    let daemon = Daemon::start(&["--max-message-bytes", "65536"]);
    let mut client = daemon.client().await;
    let signer = daemon.info.signer();
    let session = client.session().to_owned();

    let wrong_key = good_frames(&session, &Signer::new(b"not the key"));
    let mut tampered = good_frames(&session, &signer);
    let last = tampered.len() - 1;
    tampered[last] = Bytes::from_static(br#"{"tampered": true}"#);
    let truncated = good_frames(&session, &signer)[..3].to_vec();
    let no_delimiter = vec![Bytes::from_static(b"just"), Bytes::from_static(b"noise")];
    let non_json = {
        let mut f = vec![Bytes::from_static(DELIMITER), Bytes::new()];
        f.extend([b"{not json".as_slice(), b"{}", b"{}", b"{}"].map(Bytes::copy_from_slice));
        // Sign the garbage correctly so only the JSON check can reject it.
        let sig = signer.sign([&f[2], &f[3], &f[4], &f[5]]);
        f[1] = Bytes::from(sig);
        f
    };
    let oversized = {
        let big = "x".repeat(200_000);
        Message::new(
            Header::new("execute_request", &session, "t"),
            json!({"code": big}),
        )
        .encode(&signer)
    };
    let no_msg_type = {
        let mut f = vec![Bytes::from_static(DELIMITER), Bytes::new()];
        f.extend(
            [br#"{"msg_id":"1"}"#.as_slice(), b"{}", b"{}", b"{}"].map(Bytes::copy_from_slice),
        );
        let sig = signer.sign([&f[2], &f[3], &f[4], &f[5]]);
        f[1] = Bytes::from(sig);
        f
    };
    let cases = [
        ("wrong key", wrong_key),
        ("tampered content", tampered),
        ("truncated", truncated),
        ("no delimiter", no_delimiter),
        ("non-JSON header", non_json),
        ("oversized", oversized),
        ("header without msg_type", no_msg_type),
    ];
    for (name, frames) in &cases {
        client.send_raw_shell(frames.clone()).await.unwrap();
        let reply = client
            .request(
                Target::Shell,
                "kernel_info_request",
                json!({}),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|e| panic!("no answer after {name}: {e}"));
        assert_eq!(reply.content["status"], "ok", "after {name}");
    }
    let log = daemon.log();
    for needle in [
        "bad signature",
        "truncated",
        "no <IDS|MSG> delimiter",
        "not valid JSON",
        "over the limit",
        "lacks the required field `msg_type`",
    ] {
        assert!(log.contains(needle), "log mentions {needle:?}:\n{log}");
    }
    let outcome = run(&mut client, "!echo alive").await;
    assert_eq!(outcome.stream_text("stdout"), "alive\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_content_gets_an_error_reply_not_silence() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let reply = client
        .request(
            Target::Shell,
            "complete_request",
            json!({"code": 5}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.msg_type(), "complete_reply");
    assert_eq!(reply.content["status"], "error");
    let reply = client
        .request(
            Target::Shell,
            "execute_request",
            json!({"silent": true}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.content["status"], "error");
    assert!(reply.content["execution_count"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_stall_the_kernel() {
    let daemon = Daemon::start(&[]);
    // Subscribed, but never reads: its TCP buffers fill and stay full.
    let _stalled = harness::stalled_subscriber(&daemon.info);
    let mut client = daemon.client().await;
    let t = std::time::Instant::now();
    // ~16 MB of output: far more than the stalled peer's socket buffers hold.
    let big = run(&mut client, "!head -c 16000000 /dev/zero | tr '\\0' x").await;
    assert_eq!(big.status(), "ok");
    let after = run(&mut client, "!echo done").await;
    assert_eq!(after.stream_text("stdout"), "done\n");
    client
        .heartbeat(Duration::from_secs(2))
        .await
        .expect("heartbeat");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
}
