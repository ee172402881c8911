//! Completion and inspection of skills through a real daemon: skill names
//! after `%%run` and `%skill SUB`, parameters after the name, enum and
//! bool values after `name=`, and Shift-Tab pages. No model is needed.

use std::time::Duration;

use harness::Daemon;
use serde_json::{json, Value};
use skillctl::{KernelClient, Target};

const T: Duration = Duration::from_secs(20);

const TRANSLATE: &str = "name: translate
version: 1.2.0
description: Translates a short text.
type: prompt
parameters:
  - name: language
    type: enum
    values: [French, German, français]
    default: French
    description: The language to translate into.
  - name: literal
    type: bool
  - name: words
    type: number
template: \"{{ language }} {{ literal }} {{ words }} {{ input }}\"
";

/// A daemon whose only skills are `translate` and `tally`, from a
/// configured directory.
fn daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let skills = dir.path().join("skills");
    for (folder, text) in [
        ("translate", TRANSLATE),
        (
            "tally",
            "name: tally\nversion: 0.1.0\ndescription: Counts.\ntype: prompt\ntemplate: \"{{ input }}\"\n",
        ),
    ] {
        std::fs::create_dir_all(skills.join(folder)).unwrap();
        std::fs::write(skills.join(folder).join("skill.yaml"), text).unwrap();
    }
    let config = dir.path().join("skills.toml");
    std::fs::write(
        &config,
        format!(
            "[skills]\ntrust = \"all\"\ndirs = [{:?}]\nproject = false\nbuiltin = false\nuser_dir = {:?}\nwatch = false\nindex = false\n",
            skills,
            dir.path().join("no-user-dir"),
        ),
    )
    .unwrap();
    let connection_file = dir.path().join("kernel-test.json");
    Daemon::start_in(
        dir,
        connection_file,
        &["--config", config.to_str().unwrap()],
    )
}

/// `(matches, cursor_start, cursor_end)` for the cursor at the end of `code`.
async fn complete(client: &mut KernelClient, code: &str) -> (Value, u64, u64) {
    let cursor_pos = code.chars().count();
    let reply = client
        .request(
            Target::Shell,
            "complete_request",
            json!({"code": code, "cursor_pos": cursor_pos}),
            T,
        )
        .await
        .unwrap();
    let c = &reply.content;
    assert_eq!(c["status"], "ok", "{code:?}: {c}");
    assert_eq!(c["cursor_end"], cursor_pos, "{code:?}");
    (
        c["matches"].clone(),
        c["cursor_start"].as_u64().unwrap(),
        c["cursor_end"].as_u64().unwrap(),
    )
}

async fn inspect(client: &mut KernelClient, code: &str, cursor_pos: usize) -> Value {
    client
        .request(
            Target::Shell,
            "inspect_request",
            json!({"code": code, "cursor_pos": cursor_pos, "detail_level": 0}),
            T,
        )
        .await
        .unwrap()
        .content
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skill_names_parameters_and_values_complete_in_place() {
    let daemon = daemon();
    let mut client = daemon.client().await;

    let cases: &[(&str, Value, u64)] = &[
        ("%%run t", json!(["tally", "translate"]), 6),
        ("%%run tr", json!(["translate"]), 6),
        ("%%run ", json!(["tally", "translate"]), 6),
        ("%skill info ta", json!(["tally"]), 12),
        ("%skill reset ", json!(["tally", "translate"]), 13),
        (
            "%%run translate ",
            json!(["language=", "literal=", "words="]),
            16,
        ),
        ("%%run translate l", json!(["language=", "literal="]), 16),
        (
            "%skill run translate@^1 language=German ",
            json!(["literal=", "words="]),
            40,
        ),
        (
            "%%run translate language=",
            json!(["French", "German", "français"]),
            25,
        ),
        ("%%run translate language=fr", json!(["français"]), 25),
        ("%%run translate literal=", json!(["false", "true"]), 24),
        ("%%run translate words=", json!([]), 22),
        ("%%run nosuch ", json!([]), 13),
        // Code points, not bytes: `ç` is two bytes.
        (
            "%%run translate language=français l",
            json!(["literal="]),
            34,
        ),
        // A later line of a cell: `%skill` is a line magic there.
        ("%vars\n%skill enable tr", json!(["translate"]), 20),
    ];
    for (code, matches, start) in cases {
        let (got, cursor_start, _) = complete(&mut client, code).await;
        assert_eq!(&got, matches, "{code:?}");
        assert_eq!(cursor_start, *start, "{code:?}");
    }

    // Not skill positions: a `%%run` body, the input after `--`, a
    // `%skill` subcommand that takes no name or no parameters.
    for code in [
        "%skill info translate la",
        "%%run translate\nla",
        "%skill run translate -- la",
        "%skill search ta",
    ] {
        let (got, _, _) = complete(&mut client, code).await;
        assert_eq!(got, json!([]), "{code:?}");
    }
    // The subcommands themselves still complete.
    let (got, cursor_start, _) = complete(&mut client, "%skill re").await;
    assert_eq!(got, json!(["reload", "remove", "reset"]));
    assert_eq!(cursor_start, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_tab_on_a_skill_shows_its_info_and_on_a_parameter_its_help() {
    let daemon = daemon();
    let mut client = daemon.client().await;
    let code = "%%run translate language=German\nGood morning";

    let reply = inspect(&mut client, code, 9).await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["found"], true);
    let page = reply["data"]["text/markdown"].as_str().unwrap();
    assert!(
        page.starts_with("**translate** 1.2.0 — prompt skill (configured, "),
        "{page}"
    );
    assert!(
        page.contains("| `language` | enum (French, German, français) | no | French | The language to translate into. |"),
        "{page}"
    );
    assert_eq!(reply["data"]["text/plain"], reply["data"]["text/markdown"]);

    let reply = inspect(&mut client, code, 20).await;
    assert_eq!(reply["found"], true);
    assert_eq!(
        reply["data"]["text/markdown"],
        "**language** — enum parameter of skill **translate** (optional, default `French`)\n\n\
         Values: `French`, `German`, `français`\n\nThe language to translate into.\n"
    );

    let reply = inspect(&mut client, "%skill info tally", 15).await;
    assert_eq!(reply["found"], true);
    assert!(reply["data"]["text/markdown"]
        .as_str()
        .unwrap()
        .starts_with("**tally** 0.1.0"));

    let reply = inspect(&mut client, "%%run nosuch", 9).await;
    assert_eq!(reply["found"], false, "{reply}");
    assert_eq!(reply["data"], json!({}));
}
