//! Named backends through the real daemon: an OpenAI-compatible server
//! (the fake) serving prompt cells, `%model` on it, its API key kept out
//! of every report, a backend whose key variable is unset reported
//! without blocking the others, and a malformed table refused with its
//! file and key named.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::fake_llm_api::{ApiScript, FakeApi, Flavor, Refusal};
use harness::{bin, run, shown, Daemon, Launch};

const KEY_VAR: &str = "SKILLKERNEL_TEST_GPU_KEY";
const KEY: &str = "sk-test-0123456789-secret";

fn config_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("skillkernel.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_openai_backend_serves_prompts_and_never_shows_its_key() {
    let script = ApiScript {
        api_key: Some(KEY.into()),
        ..ApiScript::default()
    };
    let gpu = FakeApi::start(Flavor::OpenAi, script).await;
    let claude = FakeApi::start(Flavor::Anthropic, ApiScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            "[models]\ndefault = \"fake-model@gpu\"\norder = [\"gpu\", \"claude\"]\n\
             [models.backends.gpu]\nkind = \"openai\"\nurl = \"{}\"\napi_key_env = \"{KEY_VAR}\"\n\
             [models.backends.claude]\nkind = \"anthropic\"\nurl = \"{}\"\napi_key_env = \"SKILLKERNEL_TEST_UNSET_KEY\"\n\
             [sandbox]\nenv = [\"SKILLKERNEL_TEST_*\"]\n",
            gpu.url(),
            claude.url()
        ),
    );
    let launch = Launch {
        env: vec![
            (KEY_VAR.into(), KEY.into()),
            ("SKILLKERNEL_TEST_VISIBLE".into(), "passed-through".into()),
        ],
        ..Launch::default()
    };
    let daemon = Daemon::start_with(launch, &["--config", config.to_str().unwrap()]);
    let mut client = daemon.client().await;

    let answer = run(&mut client, "Say hello").await;
    assert_eq!(answer.status(), "ok", "{:?}", answer.reply.content);
    let markdown = answer
        .iopub
        .iter()
        .filter_map(|m| m.content["data"]["text/markdown"].as_str())
        .last()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(markdown, "Hello, wörld — done.");
    let meta = &answer.reply.metadata["model"];
    assert_eq!(meta["name"], "fake-model@gpu");
    assert_eq!(meta["prompt_tokens"], 11);
    assert_eq!(meta["completion_tokens"], 3);
    let sent = gpu
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        sent.body["messages"].as_array().unwrap().last().unwrap()["content"],
        "Say hello"
    );

    let list = run(&mut client, "%model list").await;
    let text = shown(&list);
    assert!(
        text.contains("fake-model") && text.contains("gpu"),
        "{text}"
    );
    assert!(
        text.contains("SKILLKERNEL_TEST_UNSET_KEY"),
        "the unset variable is named: {text}"
    );

    let pull = run(&mut client, "%model pull fake-model@gpu").await;
    assert_eq!(pull.status(), "error");
    assert!(
        shown(&pull).contains("not supported by this backend"),
        "{}",
        shown(&pull)
    );

    // `[sandbox] env` allows the key's name by pattern; it is withheld
    // anyway, while the pattern's other variable passes (the control).
    let env = run(&mut client, "!env").await;
    assert_eq!(env.status(), "ok", "{}", shown(&env));
    assert!(
        shown(&env).contains("SKILLKERNEL_TEST_VISIBLE=passed-through"),
        "{}",
        shown(&env)
    );

    let status = run(&mut client, "%status").await;
    let model_status = run(&mut client, "%model status").await;
    let config_out = Command::new(bin("skillkernel"))
        .args(["config", "--config", config.to_str().unwrap()])
        .env(KEY_VAR, KEY)
        .output()
        .unwrap();
    assert!(config_out.status.success());
    let log = daemon.log();
    assert!(
        log.contains("SKILLKERNEL_TEST_UNSET_KEY is not set"),
        "the missing key is reported at start: {log}"
    );
    for (what, text) in [
        ("%status", shown(&status)),
        ("%model status", shown(&model_status)),
        (
            "skillkernel config",
            String::from_utf8_lossy(&config_out.stdout).into_owned(),
        ),
        ("`!env` in the sandbox", shown(&env)),
        ("the log", log),
    ] {
        assert!(!text.contains(KEY), "{what} shows the API key: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_backend_table_is_refused_naming_its_file_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[models.backends.gpu]\nkind = \"openia\"\nurl = \"http://h/v1\"\n", "openia"),
        ("[models.backends.gpu]\nkind = \"openai\"\n", "needs `url`"),
        (
            "[models.backends.gpu]\nkind = \"openai\"\nurl = \"http://a/v1\"\nurls = [\"http://b/v1\"]\n",
            "both set",
        ),
        ("[models]\norder = [\"gpu\"]\n", "unknown backend `gpu`"),
    ];
    for (body, said) in cases {
        let config = config_file(dir.path(), body);
        let out = Command::new(bin("skillkernel"))
            .args(["config", "--check", "--config", config.to_str().unwrap()])
            .env("SKILLKERNEL_SYSTEM_CONFIG", "")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body} was accepted");
        assert!(
            stderr.contains(config.to_str().unwrap()) && stderr.contains(said),
            "{body}\n→ {stderr}"
        );
        if !body.starts_with("[models]\norder") {
            assert!(stderr.contains("[models.backends.gpu]"), "{stderr}");
        }
    }
}

/// Polls the daemon's log until it holds `needle` (10 s at most).
async fn logged(daemon: &Daemon, needle: &str) -> bool {
    for _ in 0..100 {
        if daemon.log().contains(needle) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_falls_back_when_its_first_server_fails_and_a_broken_reload_is_kept_out() {
    let failing = ApiScript {
        always: Some(Refusal::json(503, "the GPU box is overloaded")),
        ..ApiScript::default()
    };
    let gpu = FakeApi::start(Flavor::OpenAi, failing).await;
    let claude = FakeApi::start(
        Flavor::Anthropic,
        ApiScript {
            pieces: vec!["Answered ".into(), "by claude".into()],
            ..ApiScript::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "[models]\ndefault = \"fake-model@gpu\"\norder = [\"gpu\", \"claude\"]\n\
         [models.profiles]\npremium = [\"fake-model@gpu\", \"fake-model@claude\"]\n\
         [models.backends.gpu]\nkind = \"openai\"\nurl = \"{}\"\n\
         [models.backends.claude]\nkind = \"anthropic\"\nurl = \"{}\"\n",
        gpu.url(),
        claude.url()
    );
    let config = config_file(dir.path(), &good);
    let daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    let mut client = daemon.client().await;

    // Positive control: the same server named directly fails, clearly.
    let direct = run(&mut client, "Say hello").await;
    assert_eq!(direct.status(), "error");
    assert!(shown(&direct).contains("overloaded"), "{}", shown(&direct));

    assert_eq!(run(&mut client, "%model use premium").await.status(), "ok");
    let answer = run(&mut client, "Say hello").await;
    assert_eq!(answer.status(), "ok", "{}", shown(&answer));
    assert!(
        shown(&answer).contains("Answered by claude"),
        "{}",
        shown(&answer)
    );
    assert_eq!(answer.reply.metadata["model"]["name"], "fake-model@claude");
    assert!(logged(&daemon, "falling back to the next model of the profile").await);

    // A table the daemon would refuse at start is kept out on reload.
    config_file(
        dir.path(),
        &format!("{good}[models.backends.broken]\nkind = \"openai\"\n"),
    );
    daemon.signal(nix::sys::signal::Signal::SIGUSR1);
    assert!(
        logged(&daemon, "keeping the running configuration").await,
        "{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("[models.backends.broken]") && log.contains("skillkernel.toml"),
        "the refusal names the file and table: {log}"
    );
    let again = run(&mut client, "Say hello").await;
    assert_eq!(again.status(), "ok", "{}", shown(&again));
    assert_eq!(again.reply.metadata["model"]["name"], "fake-model@claude");
}
