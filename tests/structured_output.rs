//! Typed answers through the real daemon: `%%prompt --schema` and
//! `--json` on the real default model, skills with an `output_schema`
//! (the examples) from a notebook cell, `skill_request` and `skillctl
//! skill run --json`, a workflow passing structured fields, and the
//! Ollama backend: the schema goes out as `format`, and a server that
//! ignores it gets one second try and then a VALIDATION_ERROR.

use std::path::{Path, PathBuf};

use harness::fake_ollama::{ChatScript, Config, FakeOllama};
use harness::{copy_dir, run, skill_request, Daemon};
use serde_json::{json, Value};
use skillctl::ExecuteOutcome;

/// The `application/json` the cell displayed, and its text form.
fn json_shown(outcome: &ExecuteOutcome) -> Option<(Value, String)> {
    outcome
        .iopub
        .iter()
        .filter(|m| m.msg_type() == "display_data")
        .find_map(|m| {
            let data = &m.content["data"];
            let json = data.get("application/json")?.clone();
            Some((json, data["text/plain"].as_str()?.to_owned()))
        })
}

fn validates(schema: &Value, value: &Value) -> bool {
    jsonschema::validator_for(schema).unwrap().is_valid(value)
}

const CITY: &str = r#"{"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}, "country": {"enum": ["France", "Italy", "Japan"]}}, "required": ["city", "country"], "additionalProperties": false}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_cell_with_a_schema_answers_json_valid_for_it() {
    let daemon = Daemon::start(&["--model-dir", &harness::default_model_dir()]);
    let mut client = daemon.client().await;

    let typed = run(
        &mut client,
        &format!("%%prompt --schema {CITY}\nWhere is the Eiffel Tower?"),
    )
    .await;
    assert_eq!(typed.status(), "ok", "{:?}", typed.reply.content);
    let (value, text) = json_shown(&typed).expect("an application/json display");
    assert!(
        validates(&serde_json::from_str(CITY).unwrap(), &value),
        "{value}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        value,
        "the text form is the same JSON"
    );
    assert!(
        typed.reply.metadata["model"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let object = run(&mut client, "%%prompt --json\nName two colours.").await;
    assert_eq!(object.status(), "ok", "{:?}", object.reply.content);
    assert!(json_shown(&object).unwrap().0.is_object());

    // The control: the same question without a schema is prose, streamed.
    let free = run(&mut client, "%%prompt\nWhere is the Eiffel Tower?").await;
    assert_eq!(free.status(), "ok");
    assert!(json_shown(&free).is_none());

    let broken = run(&mut client, "%%prompt --schema {\"type\": \nx").await;
    assert_eq!(broken.status(), "error");
    assert!(
        broken.reply.content["evalue"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{:?}",
        broken.reply.content
    );
    let unusable = run(
        &mut client,
        "%%prompt --schema {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"strnig\"}}}\nx",
    )
    .await;
    let evalue = unusable.reply.content["evalue"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        evalue.contains("/properties/a"),
        "the schema path: {evalue}"
    );
    // The kernel keeps serving after both.
    assert_eq!(run(&mut client, "%set x = 1").await.status(), "ok");
}

/// A config whose skills are the typed examples.
fn skills_config(dir: &Path) -> PathBuf {
    let skills = dir.join("skills");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/skills");
    for name in ["extract-person", "article-brief"] {
        copy_dir(&examples.join(name), &skills.join(name));
    }
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{skills:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\n",
            dir.join("user-skills")
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_skills_answer_json_in_cells_replies_and_skillctl() {
    let dir = tempfile::tempdir().unwrap();
    let config = skills_config(dir.path());
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--model-dir",
        &harness::default_model_dir(),
    ]);
    let mut client = daemon.client().await;
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("skills/extract-person/person.schema.json"))
            .unwrap(),
    )
    .unwrap();

    let cell = run(
        &mut client,
        "%%run extract-person\nAnna is 34 years old and lives in Berlin.",
    )
    .await;
    assert_eq!(cell.status(), "ok", "{:?}", cell.reply.content);
    let (person, _) = json_shown(&cell).expect("an application/json display");
    assert!(validates(&schema, &person), "{person}");

    let reply = skill_request(
        &mut client,
        json!({"action": "run", "skill": "extract-person", "input": "Bob, 51, is from Toronto."}),
    )
    .await;
    assert_eq!(
        reply.reply.content["status"], "ok",
        "{:?}",
        reply.reply.content
    );
    let structured = &reply.reply.content["json"];
    assert!(validates(&schema, structured), "{structured}");
    assert_eq!(
        serde_json::from_str::<Value>(reply.reply.content["output"].as_str().unwrap()).unwrap(),
        *structured
    );

    let cli = daemon.skillctl(&[
        "skill",
        "run",
        "extract-person",
        "--json",
        "--input",
        "Carla is 28 and lives in Lisbon.",
    ]);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let printed: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert!(validates(&schema, &printed["json"]), "{printed}");

    let brief = run(
        &mut client,
        "%%run article-brief\nThe city council voted to turn the old rail yard into a public park.",
    )
    .await;
    assert_eq!(brief.status(), "ok", "{:?}", brief.reply.content);
    let phases = &brief.reply.metadata["skill"]["phases"];
    assert_eq!(phases[0]["id"], "extract");
    assert_eq!(phases[1]["id"], "headline");
    assert!(phases[1]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(json_shown(&brief).is_none(), "the headline is prose");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_gets_the_schema_as_format_and_an_answer_that_ignores_it_is_asked_again_then_refused(
) {
    let fake = FakeOllama::start(Config::default()).await;
    let daemon = Daemon::start(&[
        "--model-dir",
        &harness::default_model_dir(),
        "--ollama-host",
        &fake.url(),
    ]);
    let mut client = daemon.client().await;
    assert_eq!(
        run(&mut client, "%model use llama3.2:latest")
            .await
            .status(),
        "ok"
    );

    // The fake answers prose whatever it is asked, as a server without
    // structured outputs would.
    let refused = run(
        &mut client,
        &format!("%%prompt --schema {CITY}\nWhere is the Eiffel Tower?"),
    )
    .await;
    assert_eq!(
        refused.reply.content["ename"], "VALIDATION_ERROR",
        "{:?}",
        refused.reply.content
    );
    let traceback = refused.reply.content["traceback"].to_string();
    assert!(
        traceback.contains("Paris — café"),
        "the offending output: {traceback}"
    );
    let chats: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/chat")
        .collect();
    assert_eq!(chats.len(), 2, "one second try");
    let schema: Value = serde_json::from_str(CITY).unwrap();
    assert_eq!(chats[0].body["format"], schema);
    let second = chats[1].body["messages"].as_array().unwrap();
    assert_eq!(second[second.len() - 2]["role"], "assistant");
    assert!(second.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .contains("not JSON"));

    // `--json` goes out as Ollama's `"json"`.
    let _ = run(&mut client, "%%prompt --json\nx").await;
    assert_eq!(
        fake.last_request("/api/chat").unwrap().body["format"],
        "json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ollama_answer_in_the_schema_is_shown_as_json() {
    let fake = FakeOllama::start(Config {
        chat: ChatScript {
            pieces: ["{\"city\": ", "\"Paris\", ", "\"country\": \"France\"}"]
                .map(str::to_owned)
                .to_vec(),
            ..ChatScript::default()
        },
        ..Config::default()
    })
    .await;
    let daemon = Daemon::start(&[
        "--model-dir",
        &harness::default_model_dir(),
        "--ollama-host",
        &fake.url(),
    ]);
    let mut client = daemon.client().await;
    assert_eq!(
        run(&mut client, "%model use llama3.2:latest")
            .await
            .status(),
        "ok"
    );
    let typed = run(
        &mut client,
        &format!("%%prompt --schema {CITY}\nWhere is the Eiffel Tower?"),
    )
    .await;
    assert_eq!(typed.status(), "ok", "{:?}", typed.reply.content);
    assert_eq!(
        json_shown(&typed).unwrap().0,
        json!({"city": "Paris", "country": "France"})
    );
}
