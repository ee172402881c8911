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

/// A daemon that has run a `!` command, a client, and the daemon's RSS
/// then: the baseline for what a test's traffic adds.
async fn warmed_up() -> (Daemon, skillctl::KernelClient, u64) {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    assert_eq!(run(&mut client, "!echo warm").await.status(), "ok");
    let before = rss_bytes(daemon.pid());
    (daemon, client, before)
}

/// The daemon's resident memory, from `/proc`.
fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_costs_the_daemon_bounded_memory() {
    const CELL: &str = "!head -c 256000 /dev/zero | tr '\\0' x";
    const CELLS: usize = 400;
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    // Warm up the allocator, the sandbox and the history first.
    for _ in 0..10 {
        assert_eq!(run(&mut client, CELL).await.status(), "ok");
    }
    let before = rss_bytes(daemon.pid());
    let _stalled = harness::stalled_subscriber(&daemon.info);
    // 400 × 256 KB ≈ 98 MiB through IOPub: a queue without a bound for
    // the stalled peer would grow the daemon by about that much.
    for i in 0..CELLS {
        let out = run(&mut client, CELL).await;
        // The positive control: the reading client gets every byte.
        assert_eq!(out.stream_text("stdout").len(), 256_000, "cell {i}");
    }
    let grown = rss_bytes(daemon.pid()).saturating_sub(before);
    eprintln!("RSS grew {} KiB over {CELLS} cells", grown >> 10);
    assert!(
        grown < 40 << 20,
        "the daemon grew {} MiB for a subscriber that does not read",
        grown >> 20
    );
    let status = harness::shown(&run(&mut client, "%status").await);
    assert!(
        status.contains("1 not reading") && status.contains("messages dropped"),
        "%status says what IOPub dropped: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_and_never_reads_its_replies_does_not_stall_the_others() {
    use std::io::Write;
    let (daemon, mut client, before) = warmed_up().await;
    let pid = daemon.pid();
    let signer = daemon.info.signer();
    let mut greedy = harness::raw_zmtp_peer(daemon.info.shell_port, "DEALER", b"greedy");
    // 20,000 kernel_info_requests, never reading a reply: far more replies
    // than the peer's socket buffers hold. Written from a thread, since
    // the kernel may stop reading them too.
    let writer = std::thread::spawn(move || {
        let wire = harness::zmtp_message(&good_frames("greedy", &signer));
        for _ in 0..20_000 {
            if greedy.write_all(&wire).is_err() {
                break;
            }
        }
        greedy
    });
    for i in 0..20 {
        let out = tokio::time::timeout(Duration::from_secs(20), run(&mut client, "!echo ok"))
            .await
            .unwrap_or_else(|_| panic!("cell {i}: no answer while another client does not read"));
        assert_eq!(out.stream_text("stdout"), "ok\n");
    }
    let _greedy = writer.join().expect("writer");
    let grown = rss_bytes(pid).saturating_sub(before);
    eprintln!(
        "RSS grew {} KiB with a shell client not reading",
        grown >> 10
    );
    // Unbounded, the replies alone grew the daemon by 28 MiB.
    assert!(grown < 12 << 20, "grew {} MiB", grown >> 20);
}

/// Requests sent while a cell runs wait in the sender's socket, not in
/// the daemon: the shell reader decodes only a few ahead and the
/// transport holds at most 64 MiB, then stops reading the sender. Once
/// the cell ends, every request is read (the positive control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_while_a_cell_runs_wait_in_the_sender_not_in_the_daemon() {
    use std::io::Write;
    const REQUESTS: usize = 80;
    const PAD: usize = 2 << 20;
    let (daemon, mut client, before) = warmed_up().await;
    let pid = daemon.pid();
    let signer = daemon.info.signer();
    let shell_port = daemon.info.shell_port;
    let flooding = async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut flood = harness::raw_zmtp_peer(shell_port, "DEALER", b"flood");
        // 80 × 2 MiB = 160 MiB of requests behind the running cell.
        let writer = std::thread::spawn(move || {
            let content = json!({ "pad": "x".repeat(PAD) });
            let frames = Message::new(Header::new("kernel_info_request", "flood", "t"), content)
                .encode(&signer);
            let wire = harness::zmtp_message(&frames);
            for _ in 0..REQUESTS {
                flood.write_all(&wire).expect("the daemon reads in the end");
            }
            flood
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let grown = rss_bytes(pid).saturating_sub(before);
        eprintln!(
            "RSS grew {} MiB with 160 MiB of requests waiting",
            grown >> 20
        );
        assert!(
            !writer.is_finished(),
            "all 160 MiB were taken while the cell still ran"
        );
        assert!(grown < 120 << 20, "grew {} MiB", grown >> 20);
        writer
    };
    let (out, writer) = tokio::join!(run(&mut client, "!sleep 6"), flooding);
    assert_eq!(out.status(), "ok");
    assert!(
        harness::detached::wait_until(Duration::from_secs(60), || writer.is_finished()),
        "the daemon read every waiting request once the cell ended"
    );
    let _flood = writer.join().expect("writer");
    assert_eq!(run(&mut client, "!echo still").await.status(), "ok");
}

/// Open descriptors of a process.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_subscribers_that_come_and_go_leave_nothing_behind() {
    use std::io::Write;
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    assert_eq!(run(&mut client, "!echo warm").await.status(), "ok");
    let pid = daemon.pid();
    let fds = open_fds(pid);
    for i in 0..2000 {
        let mut sub = harness::raw_zmtp_peer(daemon.info.iopub_port, "SUB", b"");
        sub.write_all(&[0x00, 0x01, 0x01]).expect("subscribe");
        // Every tenth leaves mid-handshake instead: a bare connect.
        if i % 10 == 0 {
            drop(std::net::TcpStream::connect((
                "127.0.0.1",
                daemon.info.iopub_port,
            )));
        }
    }
    // The daemon notices each close on its own time.
    let mut status = String::new();
    for _ in 0..100 {
        status = harness::shown(&run(&mut client, "%status").await);
        if status.contains("| IOPub | 1 subscriber") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.contains("| IOPub | 1 subscriber"), "{status}");
    let out = run(&mut client, "!echo still").await;
    assert_eq!(out.stream_text("stdout"), "still\n");
    let now = open_fds(pid);
    assert!(now <= fds + 4, "descriptors {fds} → {now}");
}
