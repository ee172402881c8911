//! Tool loops with the scripted provider: a call of another skill and its
//! result back to the model, a tool the model was not given, arguments
//! that do not fit, a failing tool, the step limit, and an interrupt.

use std::sync::Arc;
use std::time::Duration;

use skillkernel_providers::scripted::ScriptedProvider;
use skillkernel_providers::ProviderError;

use super::{context, executor, prompt_skill, run};
use crate::exec::{ExecEvent, RunRequest};
use crate::tools::{ToolSource, Toolbox};
use crate::Skill;

/// `assistant` may call `shout`, a prompt skill.
fn skills(max_steps: u32) -> (Arc<Skill>, Arc<Skill>) {
    let shout = prompt_skill("shout", None, "Shout: {{ input }}");
    let mut assistant = prompt_skill("assistant", Some("You help."), "{{ input }}");
    assistant.tools = Toolbox {
        tools: vec![ToolSource::Skill {
            name: "shout".into(),
            description: None,
        }],
        max_steps,
        ..Toolbox::default()
    };
    (Arc::new(assistant), Arc::new(shout))
}

fn request(assistant: Arc<Skill>, shout: Arc<Skill>) -> RunRequest {
    let mut req = RunRequest::new(assistant, "Say hello loudly");
    req.tool_skills = vec![shout];
    req
}

/// The last message of a request: what the model was last told.
fn last(request: &skillkernel_providers::CompletionRequest) -> &str {
    &request.messages.last().unwrap().content
}

#[tokio::test]
async fn the_model_calls_a_skill_and_answers_with_its_result() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(|r| {
            Ok(if r.tools.is_empty() {
                // The `shout` skill's own model call.
                format!("{}!!", last(r).to_uppercase())
            } else if r.messages.iter().any(|m| m.role == "tool") {
                format!("The tool said: {}", last(r))
            } else {
                "@call shout {\"input\": \"hello\"}".into()
            })
        })
        .build();
    let (assistant, shout) = skills(4);
    let (out, events) = run(&executor(), &context(&provider), request(assistant, shout)).await;
    let out = out.unwrap();
    assert_eq!(out.text, "The tool said: SHOUT: HELLO!!");
    assert_eq!(out.tool_steps.len(), 1);
    let step = &out.tool_steps[0];
    assert!(step.ok, "{step:?}");
    assert_eq!(
        (step.tool.as_str(), step.result.as_str()),
        ("shout", "SHOUT: HELLO!!")
    );
    let calls = provider.calls();
    assert_eq!(calls.len(), 3, "step 1, the tool's own call, step 2");
    assert_eq!(calls[0].tools[0].name, "shout");
    assert!(calls[0].tools[0].parameters["properties"]["input"].is_object());
    let second = &calls[2].messages;
    assert_eq!(second[second.len() - 2].tool_calls[0].name, "shout");
    assert_eq!(
        second.last().unwrap().tool_call_id.as_deref(),
        Some(step.call_id.as_str())
    );
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ExecEvent::ToolCalled { .. } => Some("called"),
            ExecEvent::ToolFinished(_) => Some("finished"),
            ExecEvent::Text { .. } => Some("text"),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["called", "finished", "text"],
        "each step is reported as it happens"
    );
}

#[tokio::test]
async fn a_tool_it_was_not_given_or_arguments_that_do_not_fit_are_errors_for_the_model_never_calls()
{
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(|r| {
            let results = r.messages.iter().filter(|m| m.role == "tool").count();
            Ok(match (r.tools.is_empty(), results) {
                (true, _) => panic!("no tool may run: {:?}", r.messages),
                (false, 0) => "@call rm_rf {\"path\": \"/\"}\n@call shout {\"loud\": true}".into(),
                (false, _) => "I could not.".into(),
            })
        })
        .build();
    let (assistant, shout) = skills(4);
    let (out, _) = run(&executor(), &context(&provider), request(assistant, shout)).await;
    let out = out.unwrap();
    assert_eq!(out.text, "I could not.");
    let [unknown, misfit] = &out.tool_steps[..] else {
        panic!("{:?}", out.tool_steps)
    };
    assert!(
        !unknown.ok
            && unknown.result.contains("no tool named `rm_rf`")
            && unknown.result.contains("shout")
    );
    assert!(
        !misfit.ok && misfit.result.contains("invalid arguments"),
        "{}",
        misfit.result
    );
}

#[tokio::test]
async fn a_failing_tool_is_reported_and_the_loop_goes_on() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(|r| {
            if r.tools.is_empty() {
                return Err(ProviderError::Inference("the tool's model broke".into()));
            }
            Ok(if r.messages.iter().any(|m| m.role == "tool") {
                format!("Failed: {}", last(r))
            } else {
                "@call shout {\"input\": \"x\"}".into()
            })
        })
        .build();
    let (assistant, shout) = skills(4);
    let (out, _) = run(&executor(), &context(&provider), request(assistant, shout)).await;
    let out = out.unwrap();
    assert!(!out.tool_steps[0].ok);
    assert!(
        out.text.starts_with("Failed: error: SKILL_EXECUTION_ERROR"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn the_step_limit_stops_the_loop_and_keeps_its_calls() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(|r| {
            let n = r.messages.len();
            Ok(if r.tools.is_empty() {
                "ok".into()
            } else {
                format!("@call shout {{\"input\": \"again {n}\"}}")
            })
        })
        .build();
    let (assistant, shout) = skills(3);
    let (out, events) = run(&executor(), &context(&provider), request(assistant, shout)).await;
    let out = out.unwrap();
    assert_eq!(out.tool_steps.len(), 3);
    assert_eq!(out.text, "", "no answer");
    assert_eq!(out.phases.len(), 3);
    assert!(events
        .iter()
        .any(|e| matches!(e, ExecEvent::Output { stream, .. } if stream == "stderr")));
}

#[tokio::test]
async fn an_interrupt_stops_the_loop_between_steps() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .delay(Duration::from_millis(150))
        .reply_with(|r| {
            let n = r.messages.len();
            Ok(if r.tools.is_empty() {
                "ok".into()
            } else {
                format!("@call shout {{\"input\": \"again {n}\"}}")
            })
        })
        .build();
    let (assistant, shout) = skills(50);
    let req = request(assistant, shout);
    let cancel = req.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let (out, _) = run(&executor(), &context(&provider), req).await;
    let out = out.unwrap();
    assert!(out.interrupted);
    assert!(out.tool_steps.len() < 50);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_call_made_again_gets_its_earlier_result_and_the_model_must_answer() {
    let provider = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .reply_with(|r| {
            Ok(match (r.tools.is_empty(), r.tool_choice) {
                (true, _) => "LOUD".into(),
                (false, skillkernel_providers::ToolChoice::None) => "Done: LOUD".into(),
                (false, _) => "@call shout {\"input\": \"same\"}".into(),
            })
        })
        .build();
    let (assistant, shout) = skills(8);
    let (out, _) = run(&executor(), &context(&provider), request(assistant, shout)).await;
    let out = out.unwrap();
    assert_eq!(out.text, "Done: LOUD");
    assert_eq!(out.tool_steps.len(), 2);
    assert!(
        out.tool_steps[1].result.contains("already"),
        "{}",
        out.tool_steps[1].result
    );
    let tool_runs = provider
        .calls()
        .iter()
        .filter(|c| c.tools.is_empty())
        .count();
    assert_eq!(tool_runs, 1, "the repeated call was not run again");
}
