use std::sync::Arc;

use serde_json::{json, Map, Value};
use skillkernel_providers::scripted::ScriptedProvider;

use super::{context, executor, param, prompt_skill, run};
use crate::exec::params::{validate, Args};
use crate::exec::RunRequest;
use crate::model::ParamKind;
use crate::{ErrorCode, Skill};

fn translator() -> Skill {
    let mut s = prompt_skill("translate", None, "{{input}}");
    let mut language = param(
        "language",
        ParamKind::Enum(vec!["french".into(), "german".into()]),
    );
    language.required = true;
    let mut words = param("words", ParamKind::Number);
    words.default = Some(json!(50));
    let mut code = param("code", ParamKind::String);
    code.pattern = Some(regex::Regex::new("[a-z]+|[a-z]+[0-9]").unwrap());
    s.parameters = vec![
        language,
        words,
        param("formal", ParamKind::Bool),
        code,
        param("note", ParamKind::String),
    ];
    s
}

fn text(pairs: &[&str]) -> Args {
    Args::from_tokens(pairs).unwrap()
}

fn json_args(v: Value) -> Args {
    Args::Json(v.as_object().unwrap().clone())
}

#[test]
fn strings_are_coerced_by_kind_and_defaults_fill_the_rest() {
    let s = translator();
    let values = validate(
        &s,
        &text(&["language=german", "formal=YES", "code=ab1", "note=a=b"]),
    )
    .unwrap();
    let expected: Map<String, Value> = json!({
        "language": "german", "formal": true, "code": "ab1", "note": "a=b", "words": 50
    })
    .as_object()
    .unwrap()
    .clone();
    assert_eq!(values, expected);
    for (given, want) in [("1", true), ("no", false), ("0", false), ("True", true)] {
        let v = validate(&s, &text(&["language=french", &format!("formal={given}")])).unwrap();
        assert_eq!(v["formal"], json!(want), "{given}");
    }
    let v = validate(&s, &text(&["language=french", "words=3"])).unwrap();
    assert_eq!(v["words"].to_string(), "3", "an integer stays an integer");
    let v = validate(&s, &text(&["language=french", "words=2.5"])).unwrap();
    assert_eq!(v["words"], json!(2.5));
    assert_eq!(v["formal"], Value::Null, "optional, no default");
}

#[test]
fn each_refusal_names_the_parameter_the_value_and_what_is_allowed() {
    let s = translator();
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["language=frnch"],
            &[
                "`language`",
                "`frnch`",
                "french, german",
                "did you mean `french`",
            ],
        ),
        (
            &["language=french", "words=many"],
            &["`words`", "`many`", "a number"],
        ),
        (
            &["language=french", "formal=maybe"],
            &["`formal`", "`maybe`", "yes/no"],
        ),
        // `[a-z]+` matches a prefix of `abc12`, the whole pattern does not.
        (
            &["language=french", "code=abc12"],
            &["`code`", "`abc12`", "matching"],
        ),
        (&[], &["`language` is required", "language=french"]),
        (
            &["language=french", "langauge=german"],
            &["no parameter `langauge`", "did you mean `language`"],
        ),
        (
            &["language=french", "language=german"],
            &["`language` is given twice"],
        ),
        (&["language=french", "words=inf"], &["`words`", "a number"]),
    ];
    for (args, needles) in cases {
        let e = validate(&s, &text(args)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
        let said = format!("{} / {}", e.message, e.hint);
        for needle in needles {
            assert!(
                said.contains(needle),
                "{args:?}: {needle:?} not in {said:?}"
            );
        }
    }
    let bad = Args::from_tokens(["language"]).unwrap_err();
    assert!(bad.message.contains("name=value"), "{}", bad.message);
}

#[test]
fn json_values_are_type_checked_not_coerced() {
    let s = translator();
    let v = validate(
        &s,
        &json_args(json!({"language": "french", "words": 7, "formal": false})),
    )
    .unwrap();
    assert_eq!(
        (v["words"].clone(), v["formal"].clone()),
        (json!(7), json!(false))
    );
    for (args, needle) in [
        (
            json!({"language": "french", "words": "7"}),
            "got string `\"7\"`, expected a number",
        ),
        (
            json!({"language": "french", "formal": "yes"}),
            "expected a bool",
        ),
        (
            json!({"language": 1}),
            "got number `1`, expected one of french, german",
        ),
        (json!({"language": "french", "note": ["x"]}), "got array"),
    ] {
        let e = validate(&s, &json_args(args.clone())).unwrap_err();
        assert!(e.message.contains(needle), "{args}: {}", e.message);
    }
}

#[tokio::test]
async fn bad_arguments_stop_the_run_before_any_model_call() {
    let provider = ScriptedProvider::builder("scripted").build();
    let ctx = context(&provider);
    let exec = executor();
    let mut req = RunRequest::new(Arc::new(translator()), "hello");
    req.args = text(&["language=klingon"]);
    let (result, events) = run(&exec, &ctx, req).await;
    let e = result.unwrap_err();
    assert_eq!(e.code, ErrorCode::ValidationError);
    assert_eq!(e.skill.as_deref(), Some("translate@1.0.0"));
    assert!(events.is_empty());
    assert_eq!(provider.call_count(), 0);
    let m = exec.metrics().skill("translate").unwrap();
    assert_eq!(m.errors["VALIDATION_ERROR"], 1);
    assert_eq!(
        exec.breaker("translate").consecutive_failures,
        0,
        "not a skill failure"
    );
}
