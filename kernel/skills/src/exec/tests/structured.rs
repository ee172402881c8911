//! Output schemas: the schema reaches the backend, the answer comes back
//! as JSON, a wrong answer is retried once with what is wrong, a second
//! miss is a VALIDATION_ERROR, and later phases read an earlier phase's
//! fields.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde_json::json;
use skillkernel_providers::scripted::ScriptedProvider;
use skillkernel_providers::OutputFormat;

use super::{context, executor, phase, prompt_skill, run, streamed, workflow_skill};
use crate::exec::{ExecEvent, RunRequest};
use crate::output::OutputSchema;
use crate::ErrorCode;

fn person() -> OutputSchema {
    OutputSchema::compile(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"]
    }))
    .unwrap()
}

#[tokio::test]
async fn a_valid_answer_comes_back_as_json_and_the_schema_reaches_the_backend() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(|_| Ok(r#"{"name": "Ann", "age": 7}"#.into()))
        .build();
    let mut skill = prompt_skill("extract", None, "Who: {{ input }}");
    skill.output = Some(person());
    let (out, events) = run(
        &executor(),
        &context(&provider),
        RunRequest::new(Arc::new(skill), "Ann, seven"),
    )
    .await;
    let out = out.unwrap();
    assert_eq!(out.json, Some(json!({"name": "Ann", "age": 7})));
    assert_eq!(out.phases[0].json, out.json);
    let calls = provider.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        matches!(&calls[0].format, Some(OutputFormat::JsonSchema { schema }) if schema == person().schema())
    );
    let asked = &calls[0].messages.last().unwrap().content;
    assert!(asked.starts_with("Who: Ann, seven\n\n"), "{asked}");
    assert!(
        asked.contains("JSON Schema"),
        "the prompt names the shape: {asked}"
    );
    // A typed answer is shown once it validates, never streamed raw.
    assert_eq!(streamed(&events), "");
}

#[tokio::test]
async fn a_wrong_answer_is_retried_once_with_the_validation_error() {
    let tries = Arc::new(AtomicU32::new(0));
    let counter = tries.clone();
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(move |_| {
            Ok(match counter.fetch_add(1, Ordering::SeqCst) {
                0 => r#"{"name": "Ann", "age": "seven"}"#.into(),
                _ => r#"{"name": "Ann", "age": 7}"#.into(),
            })
        })
        .build();
    let mut skill = prompt_skill("extract", None, "{{ input }}");
    skill.output = Some(person());
    let (out, events) = run(
        &executor(),
        &context(&provider),
        RunRequest::new(Arc::new(skill), "Ann, seven"),
    )
    .await;
    let out = out.unwrap();
    assert_eq!(out.json.unwrap()["age"], 7);
    assert_eq!(out.phases[0].attempts, 2);
    let calls = provider.calls();
    assert_eq!(calls.len(), 2);
    let second = &calls[1].messages;
    assert_eq!(second[second.len() - 2].role, "assistant");
    let told = &second.last().unwrap().content;
    assert!(
        told.contains("/age"),
        "the second try says what was wrong: {told}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, ExecEvent::Retry { reason, .. } if reason.contains("output schema"))));
}

#[tokio::test]
async fn a_second_wrong_answer_is_a_validation_error_showing_the_output() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(|_| Ok("Ann is seven years old".into()))
        .build();
    let mut skill = prompt_skill("extract", None, "{{ input }}");
    skill.output = Some(person());
    let (out, _) = run(
        &executor(),
        &context(&provider),
        RunRequest::new(Arc::new(skill), "Ann, seven"),
    )
    .await;
    let error = out.unwrap_err();
    assert_eq!(error.code, ErrorCode::ValidationError);
    assert!(error.message.contains("output schema"), "{}", error.message);
    assert!(
        error.hint.contains("Ann is seven years old"),
        "{}",
        error.hint
    );
    assert_eq!(provider.calls().len(), 2, "one retry, no more");
}

#[tokio::test]
async fn a_later_phase_reads_the_fields_of_a_structured_phase() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(|request| {
            let asked = &request.messages.last().unwrap().content;
            Ok(if request.format.is_some() {
                r#"{"title": "Rust in Space", "tags": ["rust", "nasa"]}"#.into()
            } else {
                format!("ECHO {asked}")
            })
        })
        .build();
    let mut extract = phase("extract", "Extract from {{ input }}", &[]);
    extract.output = Some(
        OutputSchema::compile(json!({
            "type": "object",
            "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["title", "tags"]
        }))
        .unwrap(),
    );
    let write = phase(
        "write",
        "Title: {{ phases.extract.title }}; tags: {{ phases.extract.tags | join(', ') }}",
        &["extract"],
    );
    let skill = workflow_skill("pipeline", vec![extract, write], 2, "write");
    let (out, _) = run(
        &executor(),
        &context(&provider),
        RunRequest::new(Arc::new(skill), "an article"),
    )
    .await;
    let out = out.unwrap();
    assert_eq!(out.text, "ECHO Title: Rust in Space; tags: rust, nasa");
    assert_eq!(out.json, None, "the output phase has no schema");
    assert_eq!(out.phases[0].json.as_ref().unwrap()["tags"][1], "nasa");
}
