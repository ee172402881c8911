use super::*;
use Hook::*;
use State::*;

const NO_TIME: Duration = Duration::ZERO;

const TO_EXECUTING: &[(Hook, State)] = &[
    (Load, Loaded),
    (Init, Initializing),
    (Init, Ready),
    (Activate, Active),
    (Execute, Executing),
];

fn walk(steps: &[(Hook, State)]) -> Lifecycle {
    let mut l = Lifecycle::new("s@1.0.0", 50);
    for (hook, to) in steps {
        l.apply(*hook, *to, NO_TIME)
            .unwrap_or_else(|e| panic!("{hook} to {to}: {e}"));
    }
    l
}

#[test]
fn the_full_path_from_unloaded_to_executing_and_back_is_allowed() {
    let l = walk(&[
        (Load, Loaded),
        (Init, Initializing),
        (Init, Ready),
        (Activate, Active),
        (Execute, Executing),
        (Execute, Active),
        (Deactivate, Deactivated),
        (Unload, Unloaded),
    ]);
    let states: Vec<State> = l.history().iter().map(|t| t.to).collect();
    assert_eq!(
        states,
        [
            Loaded,
            Initializing,
            Ready,
            Active,
            Executing,
            Active,
            Deactivated,
            Unloaded
        ]
    );
    assert_eq!(l.state(), Unloaded);
}

#[test]
fn a_deactivated_skill_is_initialised_again_before_reuse() {
    let l = walk(&[
        (Load, Loaded),
        (Deactivate, Deactivated),
        (Init, Initializing),
        (Init, Ready),
    ]);
    assert_eq!(l.state(), Ready);
}

#[test]
fn failing_keeps_the_error_until_the_next_successful_transition() {
    let mut l = walk(&[]);
    let err = SkillError::new(ErrorCode::ValidationError, "bad yaml", "fix it");
    l.fail(Load, err, NO_TIME).unwrap();
    assert_eq!(l.state(), Failed);
    let kept = l.error.clone().unwrap();
    assert_eq!(kept.message, "bad yaml");
    assert_eq!(kept.skill.as_deref(), Some("s@1.0.0"));
    l.apply(Load, Loaded, NO_TIME).unwrap();
    assert!(l.error.is_none());
}

#[test]
fn init_failure_and_retry_are_allowed_from_failed() {
    let mut l = walk(&[(Load, Loaded), (Init, Initializing)]);
    l.fail(
        Init,
        SkillError::new(ErrorCode::DependencyError, "x", ""),
        NO_TIME,
    )
    .unwrap();
    l.apply(Init, Initializing, NO_TIME).unwrap();
    l.apply(Init, Ready, NO_TIME).unwrap();
    assert_eq!(l.state(), Ready);
}

#[test]
fn invalid_transitions_are_errors_that_name_the_state() {
    let mut l = walk(&[]);
    let e = l.apply(Activate, Active, NO_TIME).unwrap_err();
    assert_eq!(e.to_string(), "cannot activate `s@1.0.0`: it is Unloaded");
    assert_eq!(l.state(), Unloaded, "a refused transition changes nothing");
    assert!(l.history().is_empty());

    let mut l = walk(TO_EXECUTING);
    l.executions = 2;
    let e = l.apply(Unload, Unloaded, NO_TIME).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot unload `s@1.0.0`: it is Executing, with 2 run(s) in progress"
    );
    let as_skill: SkillError = e.into();
    assert_eq!(as_skill.code, ErrorCode::ValidationError);
    assert_eq!(
        as_skill.hint,
        "wait for its runs to finish, or interrupt them"
    );
}

#[test]
fn the_table_refuses_skipping_states() {
    let refused = [
        (Unloaded, Init, Initializing),
        (Loaded, Activate, Active),
        (Ready, Execute, Executing),
        (Active, Unload, Unloaded),
        (Executing, Unload, Unloaded),
        (Deactivated, Activate, Active),
        (Unloaded, Unload, Unloaded),
        (Failed, Activate, Active),
        (Loaded, Load, Loaded),
    ];
    for (from, hook, to) in refused {
        assert!(!allowed(from, hook, to), "{from} --{hook}--> {to}");
    }
}

#[test]
fn reload_resets_any_state_and_starts_a_new_generation() {
    let mut l = walk(TO_EXECUTING);
    l.executions = 1;
    l.apply(Reload, Unloaded, NO_TIME).unwrap();
    assert_eq!((l.state(), l.generation, l.executions), (Unloaded, 1, 0));
}

#[test]
fn history_keeps_only_the_last_n_transitions() {
    let mut l = Lifecycle::new("s@1.0.0", 3);
    for _ in 0..3 {
        l.apply(Load, Loaded, NO_TIME).unwrap();
        l.apply(Unload, Unloaded, NO_TIME).unwrap();
    }
    let h = l.history();
    assert_eq!(h.len(), 3);
    assert_eq!((h[0].from, h[0].to), (Loaded, Unloaded));
    assert_eq!(h[2].hook, Unload);
    assert!(h[2].at_unix_ms > 0);
}

/// An event's target and its fields as `name=value`.
type Recorded = (String, Vec<String>);

/// Records every event.
#[derive(Default, Clone)]
struct Capture(Arc<std::sync::Mutex<Vec<Recorded>>>);

struct FieldNames(Vec<String>);

impl tracing::field::Visit for FieldNames {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = FieldNames(Vec::new());
        event.record(&mut fields);
        let target = event.metadata().target().to_string();
        self.0.lock().unwrap().push((target, fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn each_transition_is_a_tracing_event_with_skill_from_to_hook_and_duration() {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        // Another test thread may have cached "no subscriber" for the
        // callsite while this one was being installed.
        tracing::callsite::rebuild_interest_cache();
        let mut l = Lifecycle::new("s@1.0.0", 4);
        l.apply(Load, Loaded, Duration::from_millis(3)).unwrap();
        let _ = l.apply(Activate, Active, NO_TIME); // refused: no event
    });
    let events = capture.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    let (target, fields) = &events[0];
    assert_eq!(target, "skillkernel::skills::lifecycle");
    assert_eq!(
        fields,
        &[
            "message=skill lifecycle",
            "skill=s@1.0.0",
            "from=Unloaded",
            "to=Loaded",
            "hook=load",
            "duration=3ms"
        ]
    );
}
