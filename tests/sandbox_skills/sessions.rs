//! Session skills: state kept between exchanges, interrupts, the output
//! cap, unload and shutdown, and denials inside a session.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_skill_keeps_its_state_survives_an_interrupt_and_ends_at_unload_and_shutdown() {
    let c = corpus();
    let daemon = start(&c);
    let mut client = daemon.client().await;
    let set = run(
        &mut client,
        "%%run pysession\nx = 41\ndef inc(v):\n    return v + 1",
    )
    .await;
    assert_eq!(set.status(), "ok", "{:?}", set.reply.content);
    let get = run(&mut client, "%%run pysession\nprint(inc(x))").await;
    assert_eq!(get.status(), "ok", "{:?}", get.reply.content);
    assert_eq!(get.stream_text("stdout"), "42\n");

    // An interrupt reaches Python as KeyboardInterrupt; the state stays.
    let interrupter = client.interrupter();
    let interrupt = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        interrupter.interrupt().await.unwrap();
    });
    let started = Instant::now();
    let slow = run(&mut client, "%%run pysession\nimport time; time.sleep(30)").await;
    interrupt.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        ename(&slow),
        "KeyboardInterrupt",
        "{:?}",
        slow.reply.content
    );
    assert!(slow.stream_text("stderr").contains("KeyboardInterrupt"));
    let after = run(&mut client, "%%run pysession\nprint(x)").await;
    assert_eq!(
        after.stream_text("stdout"),
        "41\n",
        "{:?}",
        after.reply.content
    );

    // A denied operation inside the session is reported; it lives on.
    let shadow = run(&mut client, "%%run pysession\nopen('/etc/shadow').read()").await;
    assert_stopped(
        &shadow,
        "SECURITY_VIOLATION",
        "a session reading /etc/shadow",
    );
    let still = run(&mut client, "%%run pysession\nprint(x)").await;
    assert_eq!(still.stream_text("stdout"), "41\n");

    let (_, report) = sandbox_status(&mut client).await;
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{report}");
    assert_eq!(sessions[0]["name"], "pysession");
    let pid = sessions[0]["pid"].as_i64().unwrap() as i32;
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    let unload = run(&mut client, "%skill unload pysession").await;
    assert_eq!(unload.status(), "ok", "{:?}", unload.reply.content);
    let gone = Instant::now();
    while Path::new(&format!("/proc/{pid}/status")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|s| !s.contains("State:\tZ"))
    {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the session outlived its unload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let fresh = run(&mut client, "%%run pysession\nprint('x' in globals())").await;
    assert_eq!(
        fresh.stream_text("stdout"),
        "False\n",
        "a new process after unload"
    );

    // A shutdown ends the session and removes its pids cgroup (root).
    let (_, report) = sandbox_status(&mut client).await;
    let pid = report["sessions"][0]["pid"].as_i64().unwrap() as u32;
    let cgroup = skillkernel_sandbox::cgroup::run_cgroup_dir(pid);
    let out = daemon.skillctl(&["shutdown"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut daemon = daemon;
    assert!(daemon.wait_exit(Duration::from_secs(20)).is_some());
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
    );
    if let Some(dir) = cgroup {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stream_big_exchanges_and_end_at_the_cap_or_an_interrupted_shell() {
    let c = corpus();
    let daemon = start(&c);
    let mut client = daemon.client().await;
    // 70 kB printed before 80 kB of input is read: both pipes full at once.
    let cell = format!(
        "%%run pysession\nprint('y' * 70000)\n# {}\nkept = 1",
        "z".repeat(80_000)
    );
    let big = run(&mut client, &cell).await;
    assert_eq!(big.status(), "ok", "{:?}", big.reply.content);
    assert_eq!(big.stream_text("stdout").trim_end().len(), 70_000);

    // Past the output cap (100 kB here) the session is ended.
    let flood = run(&mut client, "%%run pysession\nprint('f' * 200000)").await;
    assert_stopped(
        &flood,
        "SECURITY_VIOLATION",
        "a session flooding its output",
    );
    let fresh = run(&mut client, "%%run pysession\nprint('kept' in globals())").await;
    assert_eq!(
        fresh.stream_text("stdout"),
        "False\n",
        "a new process after the cap"
    );
    let log = audit(&daemon);
    assert!(log.iter().any(|e| e["skill"] == "pysession"
        && e["event"] == "limit_kill"
        && e["limit"] == "output"));

    // SIGINT ends a shell session: an interrupt, not a failure.
    let interrupter = client.interrupter();
    let interrupt = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        interrupter.interrupt().await.unwrap();
    });
    let slow = run(&mut client, "%%run shsession\nsleep 30").await;
    interrupt.await.unwrap();
    assert_eq!(
        ename(&slow),
        "KeyboardInterrupt",
        "{:?}",
        slow.reply.content
    );
    let back = run(&mut client, "%%run shsession\necho back").await;
    assert_eq!(back.stream_text("stdout"), "back\n");
}
