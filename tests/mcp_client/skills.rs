//! Skills calling an MCP server's tools in their tool loop: on the
//! OpenAI fake (the arguments it streams reach the real server) and on
//! the default model (constrained decoding of the call).

use std::path::Path;

use harness::fake_llm_api::{ApiScript, FakeApi, Flavor};
use harness::mcp::venv_program;
use harness::{shown, tool_displays};
use serde_json::{json, Value};

use crate::setup::*;

/// A prompt skill whose tools are all of server `time`'s, and an Agent
/// Skill allowed only `get_current_time`.
fn write_time_skills(dir: &Path) {
    let skills = dir.join("skills");
    std::fs::create_dir_all(skills.join("clock")).unwrap();
    std::fs::write(
        skills.join("clock/skill.yaml"),
        "name: clock\nversion: 1.0.0\ndescription: Tells the time.\ntype: prompt\n\
         template: \"{{ input }}\"\ntools: [{mcp: time}]\ntool_choice: required\n",
    )
    .unwrap();
    std::fs::create_dir_all(skills.join("tokyo-time")).unwrap();
    std::fs::write(
        skills.join("tokyo-time/SKILL.md"),
        "---\nname: tokyo-time\ndescription: Says what time it is in a city, using the time server.\n\
         allowed-tools: mcp__time__get_current_time\nmetadata:\n  tool_choice: required\n---\n\
         Call get_current_time with the city's IANA timezone, then answer with the time.\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skill_calls_an_mcp_servers_tools_in_its_loop() {
    let fake = FakeApi::start(
        Flavor::OpenAi,
        ApiScript {
            pieces: vec!["It is late ".into(), "in Tokyo.".into()],
            tool_calls: vec![(
                "time__get_current_time".into(),
                json!({"timezone": "Asia/Tokyo"}),
            )],
            ..ApiScript::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_time_skills(dir.path());
    let sections = format!(
        "[models]\ndefault = \"fake-model@fake\"\norder = [\"fake\"]\n\
         [models.backends.fake]\nkind = \"openai\"\nurl = \"{}\"\n{}",
        fake.url(),
        stdio("time", &venv_program("mcp-server-time"), &[], "")
    );
    let daemon = start(dir.path(), &sections, &[], &[]);
    let mut client = daemon.client().await;
    let ran = ok(
        &mut client,
        &daemon,
        "%%run clock\nWhat time is it in Tokyo?",
    )
    .await;
    assert!(shown(&ran).contains("in Tokyo."), "{}", shown(&ran));
    let chats: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body)
        .collect();
    assert_eq!(chats.len(), 2, "{chats:?}");
    let offered: Vec<&str> = chats[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(offered, ["time__get_current_time", "time__convert_time"]);
    assert_eq!(
        chats[0]["tools"][0]["function"]["parameters"]["required"],
        json!(["timezone"]),
        "the server's own schema"
    );
    let messages = chats[1]["messages"].as_array().unwrap();
    let result = messages.last().unwrap();
    assert_eq!(result["role"], "tool");
    let text = result["content"].as_str().unwrap();
    assert!(
        text.contains("Asia/Tokyo") && text.contains("datetime"),
        "the real server's answer goes back to the model: {text}"
    );

    // The Agent Skill is offered only the tool its allowed-tools names.
    let agent = ok(
        &mut client,
        &daemon,
        "%%run tokyo-time\nWhat time is it in Tokyo?",
    )
    .await;
    assert!(shown(&agent).contains("in Tokyo."), "{}", shown(&agent));
    let third = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .nth(2)
        .unwrap()
        .body;
    let offered: Vec<&str> = third["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(offered, ["time__get_current_time"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_model_calls_an_mcp_tool_through_constrained_decoding() {
    let dir = tempfile::tempdir().unwrap();
    write_time_skills(dir.path());
    let sections = stdio("time", &venv_program("mcp-server-time"), &[], "");
    let model_dir = harness::default_model_dir();
    let daemon = start(dir.path(), &sections, &[], &["--model-dir", &model_dir]);
    let mut client = daemon.client().await;
    let ran = ok(
        &mut client,
        &daemon,
        "%%run tokyo-time\nWhat time is it in Tokyo?",
    )
    .await;
    // Each step's display carries the call; the first must be the server's
    // tool (tool_choice: required), answered by the server itself.
    let first = tool_displays(&ran)
        .last()
        .map(|s| s["data"]["text/plain"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    assert!(
        first.contains("time__get_current_time"),
        "{first}\n{}",
        shown(&ran)
    );
    // Whatever timezone the small model picked, the server answered it:
    // a time, or its own complaint about the timezone (the call's
    // arguments, shown too, hold neither).
    assert!(
        first.contains("datetime") || first.contains("Invalid timezone"),
        "{first}"
    );
}
