//! A real OpenAI-compatible server — llama-cpp-python's, serving the
//! default model file — as an `openai` backend of the real daemon: a
//! prompt cell, a prompt skill and a three-phase workflow, answered and
//! accounted (the server's own usage report) through it, and a typed
//! answer held to its schema by the server.

use std::path::{Path, PathBuf};

use harness::llama_server::LlamaServer;
use harness::{copy_dir, default_model_dir, run, Daemon};

const ALIAS: &str = "smollm2-remote";

/// A config whose only model is the server's, and a skills directory with
/// the `translate` skill and the `pros-cons` workflow.
fn setup(dir: &Path, server: &LlamaServer) -> PathBuf {
    let skills = dir.join("skills");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills");
    for name in ["translate", "pros-cons"] {
        copy_dir(&examples.join(name), &skills.join(name));
    }
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[models]\ndefault = \"{ALIAS}@llama\"\norder = [\"llama\"]\n\
             [models.generation]\nmax_tokens = 24\ntemperature = 0.0\n\
             [models.backends.llama]\nkind = \"openai\"\nurl = \"{}\"\n\
             [skills]\ntrust = \"all\"\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n",
            server.url(),
            dir.join("user-skills")
        ),
    )
    .unwrap();
    config
}

fn markdown(outcome: &skillctl::ExecuteOutcome) -> String {
    outcome
        .iopub
        .iter()
        .filter_map(|m| m.content["data"]["text/markdown"].as_str())
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_cpp_pythons_server_answers_a_prompt_a_skill_and_a_workflow() {
    let model = Path::new(&default_model_dir()).join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let server = LlamaServer::start(&model, ALIAS);
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server);
    let daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    let mut client = daemon.client().await;

    let listed = run(&mut client, "%model list").await;
    assert_eq!(listed.status(), "ok");
    assert!(
        format!("{:?}", listed.iopub).contains(ALIAS),
        "the server's model is listed: {:?}",
        listed.iopub
    );

    let answer = run(&mut client, "What is the capital of France?").await;
    assert_eq!(
        answer.status(),
        "ok",
        "{:?}\n{}",
        answer.reply.content,
        server.log()
    );
    assert!(!markdown(&answer).trim().is_empty(), "an answer was shown");
    let meta = &answer.reply.metadata["model"];
    assert_eq!(meta["name"], format!("{ALIAS}@llama"));
    let prompt_tokens = meta["prompt_tokens"].as_u64().unwrap_or(0);
    let completion_tokens = meta["completion_tokens"].as_u64().unwrap_or(0);
    assert!(prompt_tokens > 5, "the server's usage: {meta}");
    assert!(
        (1..=24).contains(&completion_tokens),
        "max_tokens reached the server: {meta}"
    );

    let skill = run(&mut client, "%%run translate language=French\nGood morning").await;
    assert_eq!(skill.status(), "ok", "{:?}", skill.reply.content);
    assert!(!markdown(&skill).trim().is_empty());
    let meta = &skill.reply.metadata["skill"];
    assert_eq!(
        meta["phases"][0]["model"],
        format!("{ALIAS}@llama"),
        "{meta}"
    );
    assert!(
        meta["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{meta}"
    );

    let workflow = run(
        &mut client,
        "%%run pros-cons\nMove the team to a four-day week",
    )
    .await;
    assert_eq!(workflow.status(), "ok", "{:?}", workflow.reply.content);
    let phases = workflow.reply.metadata["skill"]["phases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(phases.len(), 3, "{:?}", workflow.reply.metadata);
    for phase in &phases {
        assert_eq!(phase["model"], format!("{ALIAS}@llama"), "{phase}");
    }

    // A typed answer: llama-cpp-python's server refuses the standard
    // `json_schema` response format (422) and takes `json_object` with the
    // schema, holding its own sampler to it with a grammar.
    let schema = r#"{"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"], "additionalProperties": false}"#;
    let typed = run(
        &mut client,
        &format!("%%prompt --schema {schema}\nWhere is the Eiffel Tower?"),
    )
    .await;
    assert_eq!(
        typed.status(),
        "ok",
        "{:?}\n{}",
        typed.reply.content,
        server.log()
    );
    let json = typed
        .iopub
        .iter()
        .find_map(|m| m.content["data"].get("application/json").cloned())
        .expect("an application/json display");
    assert!(json["city"].is_string(), "{json}");
    assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
}
