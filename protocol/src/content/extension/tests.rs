//! Every request variant through JSON and back, against the wire shapes
//! `docs/protocol.md` documents; the replies' envelopes; the errors for
//! content that is not a request.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;
use crate::content::ErrorContent;

/// `request` is written as `wire` exactly, and `wire` reads as `request`.
fn round_trip<R: ExtensionRequest + PartialEq + std::fmt::Debug>(request: R, wire: Value) {
    assert_eq!(serde_json::to_value(&request).unwrap(), wire);
    assert_eq!(R::parse(&wire).unwrap(), request, "{wire}");
}

/// `reply` is written as `wire` exactly, and `wire` reads as `reply`.
fn reply_round_trip<T>(reply: T, wire: Value)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(serde_json::to_value(&reply).unwrap(), wire);
    assert_eq!(serde_json::from_value::<T>(wire).unwrap(), reply);
}

#[test]
fn model_requests_have_the_documented_shape() {
    round_trip(ModelRequest::List, json!({"action": "list"}));
    round_trip(
        ModelRequest::Info { model: None },
        json!({"action": "info"}),
    );
    round_trip(
        ModelRequest::Info {
            model: Some("smollm2".into()),
        },
        json!({"action": "info", "model": "smollm2"}),
    );
    round_trip(ModelRequest::Status, json!({"action": "status"}));
    round_trip(
        ModelRequest::Usage { days: None },
        json!({"action": "usage"}),
    );
    round_trip(
        ModelRequest::Usage { days: Some(30) },
        json!({"action": "usage", "days": 30}),
    );
    for (request, action) in [
        (ModelRequest::Use { model: "m".into() }, "use"),
        (ModelRequest::Remove { model: "m".into() }, "remove"),
        (ModelRequest::Pull { model: "m".into() }, "pull"),
    ] {
        round_trip(request, json!({"action": action, "model": "m"}));
    }
    // What clients sent before the types: `null` for "not given".
    assert_eq!(
        ModelRequest::parse(&json!({"action": "info", "model": null})).unwrap(),
        ModelRequest::Info { model: None }
    );
    // Unknown keys are ignored, as they always were.
    assert_eq!(
        ModelRequest::parse(&json!({"action": "list", "verbose": true})).unwrap(),
        ModelRequest::List
    );
    assert_eq!(
        ModelRequest::actions(),
        ["list", "info", "status", "use", "remove", "pull", "usage"]
    );
    assert_eq!(ModelRequest::TYPE.request(), "model_request");
    assert_eq!(ModelRequest::TYPE.reply(), "model_reply");
}

#[test]
fn skill_requests_have_the_documented_shape() {
    round_trip(SkillRequest::List, json!({"action": "list"}));
    round_trip(
        SkillRequest::Search {
            query: "tag:text".into(),
        },
        json!({"action": "search", "query": "tag:text"}),
    );
    round_trip(
        SkillRequest::Info {
            skill: "translate@^1".into(),
        },
        json!({"action": "info", "skill": "translate@^1"}),
    );
    let mut args = serde_json::Map::new();
    args.insert("language".into(), json!("French"));
    args.insert("n".into(), json!(3));
    round_trip(
        SkillRequest::Run {
            skill: "translate".into(),
            input: "hello".into(),
            args,
        },
        json!({"action": "run", "skill": "translate", "input": "hello",
               "args": {"language": "French", "n": 3}}),
    );
    round_trip(
        SkillRequest::Load {
            path: Some("/skills/x".into()),
            skill: None,
        },
        json!({"action": "load", "path": "/skills/x"}),
    );
    round_trip(
        SkillRequest::Load {
            path: None,
            skill: Some("x".into()),
        },
        json!({"action": "load", "skill": "x"}),
    );
    round_trip(
        SkillRequest::Reload { skill: None },
        json!({"action": "reload"}),
    );
    round_trip(
        SkillRequest::Reload {
            skill: Some("x".into()),
        },
        json!({"action": "reload", "skill": "x"}),
    );
    for (request, action) in [
        (SkillRequest::Unload { skill: "x".into() }, "unload"),
        (SkillRequest::Enable { skill: "x".into() }, "enable"),
        (SkillRequest::Disable { skill: "x".into() }, "disable"),
        (SkillRequest::Reset { skill: "x".into() }, "reset"),
    ] {
        round_trip(request, json!({"action": action, "skill": "x"}));
    }
    round_trip(
        SkillRequest::Validate {
            path: None,
            skill: None,
        },
        json!({"action": "validate"}),
    );
    round_trip(
        SkillRequest::Validate {
            path: Some("a/skill.yaml".into()),
            skill: None,
        },
        json!({"action": "validate", "path": "a/skill.yaml"}),
    );
    round_trip(
        SkillRequest::Metrics {
            skill: None,
            format: MetricsFormat::Json,
        },
        json!({"action": "metrics", "format": "json"}),
    );
    round_trip(
        SkillRequest::Metrics {
            skill: Some("x".into()),
            format: MetricsFormat::Prometheus,
        },
        json!({"action": "metrics", "skill": "x", "format": "prometheus"}),
    );
    assert_eq!(
        SkillRequest::actions(),
        [
            "list",
            "search",
            "info",
            "run",
            "load",
            "reload",
            "unload",
            "enable",
            "disable",
            "validate",
            "metrics",
            "reset",
            "trust",
            "untrust",
            "install",
            "update",
            "remove",
            "installed",
            "test"
        ]
    );
    round_trip(
        SkillRequest::Trust {
            skill: "x".into(),
            digest: Some("ab12".into()),
            confirm: true,
        },
        json!({"action": "trust", "skill": "x", "digest": "ab12", "confirm": true}),
    );
    round_trip(
        SkillRequest::Untrust { skill: "x".into() },
        json!({"action": "untrust", "skill": "x"}),
    );
    round_trip(
        SkillRequest::Install {
            source: "file:///srv/skills.git".into(),
            git_ref: Some("v1".into()),
            subdir: Some("fetch".into()),
        },
        json!({"action": "install", "source": "file:///srv/skills.git", "ref": "v1", "subdir": "fetch"}),
    );
    round_trip(
        SkillRequest::Update { skill: None },
        json!({"action": "update"}),
    );
    round_trip(
        SkillRequest::Remove { skill: "x".into() },
        json!({"action": "remove", "skill": "x"}),
    );
    round_trip(SkillRequest::Installed, json!({"action": "installed"}));
    round_trip(
        SkillRequest::Test {
            skill: "x".into(),
            mode: TestMode::Replay,
            model: None,
        },
        json!({"action": "test", "skill": "x", "mode": "replay"}),
    );
    // Without `confirm` (or with null) a trust request only reviews.
    assert_eq!(
        SkillRequest::parse(&json!({"action": "trust", "skill": "x", "confirm": null})).unwrap(),
        SkillRequest::Trust {
            skill: "x".into(),
            digest: None,
            confirm: false
        }
    );
}

#[test]
fn skill_request_defaults_are_the_documented_ones() {
    // `query`, `input`, `args` and `format` default when absent or null.
    assert_eq!(
        SkillRequest::parse(&json!({"action": "search"})).unwrap(),
        SkillRequest::Search {
            query: String::new()
        }
    );
    assert_eq!(
        SkillRequest::parse(&json!({"action": "search", "query": null})).unwrap(),
        SkillRequest::Search {
            query: String::new()
        }
    );
    assert_eq!(
        SkillRequest::parse(&json!({"action": "run", "skill": "x", "args": null})).unwrap(),
        SkillRequest::Run {
            skill: "x".into(),
            input: String::new(),
            args: serde_json::Map::new(),
        }
    );
    assert_eq!(
        SkillRequest::parse(&json!({"action": "metrics", "skill": null})).unwrap(),
        SkillRequest::Metrics {
            skill: None,
            format: MetricsFormat::Json,
        }
    );
}

#[test]
fn sandbox_and_status_requests_have_the_documented_shape() {
    round_trip(SandboxRequest::Status, json!({"action": "status"}));
    round_trip(
        SandboxRequest::End { name: "py".into() },
        json!({"action": "end", "name": "py"}),
    );
    assert_eq!(SandboxRequest::actions(), ["status", "end"]);
    round_trip(StatusRequest {}, json!({}));
    assert_eq!(
        StatusRequest::parse(&json!({"detail": true})).unwrap(),
        StatusRequest {}
    );
    assert!(StatusRequest::actions().is_empty());
    assert_eq!(StatusRequest::TYPE.request(), "status_request");
    assert_eq!(SandboxRequest::TYPE.reply(), "sandbox_reply");
    assert_eq!(SkillRequest::TYPE.reply(), "skill_reply");
}

#[test]
fn mcp_requests_and_replies_have_the_documented_shape() {
    round_trip(
        McpRequest::Send {
            session: "s1".into(),
            message: json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        },
        json!({"action": "send", "session": "s1", "message": {"jsonrpc": "2.0", "id": 1, "method": "ping"}}),
    );
    round_trip(
        McpRequest::Close {
            session: "s1".into(),
        },
        json!({"action": "close", "session": "s1"}),
    );
    round_trip(McpRequest::Servers, json!({"action": "servers"}));
    round_trip(
        McpRequest::Tools {
            server: Some("time".into()),
        },
        json!({"action": "tools", "server": "time"}),
    );
    round_trip(
        McpRequest::Tools { server: None },
        json!({"action": "tools"}),
    );
    assert_eq!(McpRequest::actions(), ["send", "close", "servers", "tools"]);
    let tools: McpReply = serde_json::from_value(json!({"tools": []})).unwrap();
    assert_eq!(tools, McpReply::Tools { tools: vec![] });
    assert_eq!(McpRequest::TYPE.reply(), "mcp_reply");
    let sent: McpReply = serde_json::from_value(json!({"messages": []})).unwrap();
    assert_eq!(sent, McpReply::Sent { messages: vec![] });
    let closed: McpReply = serde_json::from_value(json!({"closed": true})).unwrap();
    assert_eq!(closed, McpReply::Closed { closed: true });
    assert_eq!(
        McpRequest::parse(&json!({"action": "send", "message": {}})).unwrap_err(),
        RequestError::MissingField {
            action: "send".into(),
            field: "session"
        }
    );
    assert_eq!(
        McpRequest::parse(&json!({"action": "send", "session": "s1"}))
            .unwrap_err()
            .to_string(),
        "missing field `message`"
    );
}

#[test]
fn content_that_is_not_a_request_says_what_is_wrong() {
    let missing = ModelRequest::parse(&json!({})).unwrap_err();
    assert_eq!(
        missing,
        RequestError::Invalid("missing field `action`".into())
    );
    let not_text = ModelRequest::parse(&json!({"action": 0})).unwrap_err();
    assert_eq!(
        not_text.to_string(),
        "invalid type: integer `0`, expected a string"
    );
    let unknown = ModelRequest::parse(&json!({"action": "dance"})).unwrap_err();
    assert_eq!(
        unknown,
        RequestError::UnknownAction {
            action: "dance".into(),
            known: ModelRequest::actions(),
        }
    );
    assert_eq!(unknown.to_string(), "unknown action `dance`");
    for content in [
        json!({"action": "use"}),
        json!({"action": "use", "model": null}),
    ] {
        assert_eq!(
            ModelRequest::parse(&content).unwrap_err(),
            RequestError::MissingField {
                action: "use".into(),
                field: "model",
            }
        );
    }
    let wrong = ModelRequest::parse(&json!({"action": "use", "model": 5})).unwrap_err();
    assert_eq!(
        wrong,
        RequestError::Invalid("invalid type: integer `5`, expected a string".into())
    );
    assert_eq!(
        SkillRequest::parse(&json!({"action": "run"})).unwrap_err(),
        RequestError::MissingField {
            action: "run".into(),
            field: "skill",
        }
    );
    assert_eq!(
        SandboxRequest::parse(&json!({"action": "end"}))
            .unwrap_err()
            .to_string(),
        "action `end` needs `name`"
    );
    assert!(matches!(
        SkillRequest::parse(&json!({"action": "metrics", "format": "xml"})),
        Err(RequestError::Invalid(_))
    ));
}

#[test]
fn replies_carry_status_and_the_answer_or_the_error() {
    let entry = ModelEntry {
        name: "smollm2".into(),
        backend: "candle".into(),
        size_bytes: Some(1),
        family: Some("llama".into()),
        quantization: None,
        context_length: Some(8192),
        price: None,
    };
    let entry_wire = json!({"name": "smollm2", "backend": "candle", "size_bytes": 1,
        "family": "llama", "quantization": null, "context_length": 8192});
    reply_round_trip(
        ReplyTo::<ModelRequest>::Ok(ModelReply::Use {
            model: entry.clone(),
            current: "smollm2@candle".into(),
        }),
        json!({"status": "ok", "action": "use", "model": entry_wire,
               "current": "smollm2@candle"}),
    );
    reply_round_trip(
        ReplyTo::<ModelRequest>::Ok(ModelReply::Status {
            providers: vec![BackendStatus {
                backend: "candle".into(),
                available: true,
                version: None,
                detail: "d".into(),
            }],
            current: "c".into(),
            current_resolved: None,
            cache: Some(CacheStatus { entries: 2 }),
        }),
        json!({"status": "ok", "action": "status",
               "providers": [{"backend": "candle", "available": true, "version": null, "detail": "d"}],
               "current": "c", "current_resolved": null, "cache": {"entries": 2}}),
    );
    let error = ErrorContent {
        ename: "UsageError".into(),
        evalue: "bad".into(),
        traceback: vec!["bad".into()],
    };
    reply_round_trip(
        ReplyTo::<ModelRequest>::Error(error.clone()),
        json!({"status": "error", "ename": "UsageError", "evalue": "bad", "traceback": ["bad"]}),
    );
    reply_round_trip(
        ReplyTo::<SkillRequest>::Error(ErrorWithHint {
            error,
            hint: "h".into(),
        }),
        json!({"status": "error", "ename": "UsageError", "evalue": "bad",
               "traceback": ["bad"], "hint": "h"}),
    );
}

#[test]
fn skill_replies_are_tagged_by_action() {
    reply_round_trip(
        ReplyTo::<SkillRequest>::Ok(SkillReply::Unload {
            skills: vec!["x@1.0.0".into()],
        }),
        json!({"status": "ok", "action": "unload", "skills": ["x@1.0.0"]}),
    );
    reply_round_trip(
        SkillReply::Metrics(MetricsReport::Prometheus {
            prometheus: "# HELP".into(),
        }),
        json!({"action": "metrics", "prometheus": "# HELP"}),
    );
    reply_round_trip(
        SkillReply::Metrics(MetricsReport::Json {
            metrics: json!({"skills": {}}),
        }),
        json!({"action": "metrics", "metrics": {"skills": {}}}),
    );
    reply_round_trip(
        SkillReply::Validate(Validation {
            valid: false,
            skills: vec![],
            errors: vec![ValidationError {
                skill: None,
                file: Some("s.yaml".into()),
                field: Some("name".into()),
                line: Some(2),
                message: "m".into(),
                remedy: "r".into(),
            }],
        }),
        json!({"action": "validate", "valid": false, "skills": [],
               "errors": [{"file": "s.yaml", "field": "name", "line": 2, "message": "m", "remedy": "r"}]}),
    );
    reply_round_trip(
        SkillReply::Reset(SkillReset {
            skill: "x".into(),
            breaker: json!({"state": "closed"}),
            conversation_cleared: true,
        }),
        json!({"action": "reset", "skill": "x", "breaker": {"state": "closed"},
               "conversation_cleared": true}),
    );
}

#[test]
fn sandbox_replies_are_told_apart_by_shape() {
    reply_round_trip(
        ReplyTo::<SandboxRequest>::Ok(SandboxReply::End(SandboxEnded { ended: true })),
        json!({"status": "ok", "ended": true}),
    );
    let status = SandboxStatus {
        helper: "/usr/bin/skillkernel".into(),
        kernel_release: Some("6.1".into()),
        arch: Some("x86_64".into()),
        layers: vec![SandboxLayer {
            name: "landlock".into(),
            active: true,
            detail: "abi 4".into(),
        }],
        probe_error: None,
        workspace: "/w".into(),
        config: json!({"network": false}),
        sessions: vec![],
        audit_log: None,
        toolchains: vec!["/home/u/.pyenv".into()],
        deny: vec!["/home/u/.ssh".into()],
        complete: true,
    };
    reply_round_trip(
        ReplyTo::<SandboxRequest>::Ok(SandboxReply::Status(Box::new(status))),
        json!({"status": "ok", "helper": "/usr/bin/skillkernel", "kernel_release": "6.1",
               "arch": "x86_64", "layers": [{"name": "landlock", "active": true, "detail": "abi 4"}],
               "probe_error": null, "workspace": "/w", "config": {"network": false},
               "sessions": [], "audit_log": null, "toolchains": ["/home/u/.pyenv"],
               "deny": ["/home/u/.ssh"], "complete": true}),
    );
}

#[test]
fn a_status_reply_reads_with_unknown_sections_ignored() {
    let wire = json!({
        "status": "ok",
        "kernel": {"name": "skillkernel", "version": "0.1.0", "protocol_version": "5.4",
                   "pid": 7, "session_id": "s", "started_at": "t", "uptime_secs": 3},
        "health": {"status": "degraded", "reasons": ["rss"], "sampled_at": "t",
                   "rss_bytes": 1, "cpu_percent": 0.5, "system_memory_total_bytes": 2,
                   "system_memory_available_bytes": 1, "load_average": [0.0, 0.0, 0.0],
                   "cpu_cores": 2, "system_uptime_secs": 9, "state_dir_free_bytes": 5,
                   "service": {"recent_runs": 3, "recent_failures": 1, "recent_requests": 0,
                               "request_p99_ms": null, "open_breakers": ["s"],
                               "unreachable_backends": []},
                   "thresholds": {"interval_secs": 5.0}},
        "session": {"execution_count": 1, "history_session": 1, "history_entries": 1,
                    "variables": 0, "conversation_turns": 0, "current_model": null},
        "persistence": {"session": null, "path": null, "persisted": false, "reason": null,
                        "history_session": 1, "history_entries": 1, "history_in_memory": 1,
                        "artifacts": 0,
                        "artifact_bytes": 0, "unsaved_changes": 0},
        "operations": [],
        "shutting_down": false,
        "iopub": {"subscribers": 2, "lagging": 1, "queued_bytes": 4096, "dropped": 12,
                  "dropped_before_subscriber": 0},
        "telemetry": [{"name": "traces", "target": "http://c:4318/v1/traces",
                       "delivered": 3, "dropped": 1, "failing": "connection refused"}],
        "a_later_section": {}
    });
    let reply: ReplyTo<StatusRequest> = serde_json::from_value(wire.clone()).unwrap();
    let Reply::Ok(report) = reply else {
        panic!("an ok reply")
    };
    assert_eq!(report.health.status, HealthStatus::Degraded);
    assert_eq!(report.kernel.pid, 7);
    assert_eq!(report.iopub.dropped, 12);
    assert_eq!(report.telemetry[0].dropped, 1);
    assert_eq!(
        report.telemetry[0].failing.as_deref(),
        Some("connection refused")
    );
    assert_eq!(report.health.thresholds["interval_secs"], 5.0);
    assert_eq!(report.health.service.open_breakers, ["s"]);
    let mut back = serde_json::to_value(Reply::<_, ErrorContent>::Ok(report)).unwrap();
    back["a_later_section"] = json!({});
    assert_eq!(back, wire);
    // A reply from a kernel before the service figures reads too.
    let mut older = wire;
    let health = older["health"].as_object_mut().unwrap();
    health.remove("service");
    health.remove("state_dir_free_bytes");
    older.as_object_mut().unwrap().remove("telemetry");
    let reply: ReplyTo<StatusRequest> = serde_json::from_value(older).unwrap();
    let Reply::Ok(report) = reply else {
        panic!("an ok reply")
    };
    assert_eq!(report.health.service, Default::default());
    assert_eq!(report.health.sample.state_dir_free_bytes, None);
    assert!(report.telemetry.is_empty());
}
