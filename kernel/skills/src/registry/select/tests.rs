use super::*;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn select(spec: &str, offers: &[(&str, Option<&str>)]) -> Result<String, SkillError> {
    let versions: Vec<Version> = offers.iter().map(|(s, _)| v(s)).collect();
    let offers: Vec<Offer> = versions
        .iter()
        .zip(offers)
        .map(|(version, (_, disabled))| Offer {
            version,
            disabled: *disabled,
        })
        .collect();
    let spec = SkillSpec::parse(spec)?;
    let i = pick(&spec, &offers, ["summarize", "translate"].into_iter())?;
    Ok(offers[i].version.to_string())
}

const SIDE_BY_SIDE: &[(&str, Option<&str>)] = &[
    ("2.0.0", None),
    ("1.3.0", None),
    ("1.2.5", None),
    ("0.4.1", None),
];

#[test]
fn a_bare_name_selects_the_first_enabled_offer() {
    assert_eq!(select("summarize", SIDE_BY_SIDE).unwrap(), "2.0.0");
    let first_disabled = &[("2.0.0", Some("broken")), ("1.3.0", None)];
    assert_eq!(select("summarize", first_disabled).unwrap(), "1.3.0");
}

#[test]
fn bare_versions_pin_as_far_as_written_and_operators_are_cargo_requirements() {
    assert_eq!(select("summarize@1.2.5", SIDE_BY_SIDE).unwrap(), "1.2.5");
    assert_eq!(select("summarize@1.2", SIDE_BY_SIDE).unwrap(), "1.2.5");
    assert_eq!(select("summarize@1", SIDE_BY_SIDE).unwrap(), "1.3.0");
    assert_eq!(select("summarize@^1", SIDE_BY_SIDE).unwrap(), "1.3.0");
    assert_eq!(select("summarize@~1.2", SIDE_BY_SIDE).unwrap(), "1.2.5");
    assert_eq!(
        select("summarize@>=0.3,<0.5", SIDE_BY_SIDE).unwrap(),
        "0.4.1"
    );
    assert_eq!(select("summarize@*", SIDE_BY_SIDE).unwrap(), "2.0.0");
}

#[test]
fn no_matching_version_lists_the_versions_present() {
    let e = select("summarize@^3", SIDE_BY_SIDE).unwrap_err();
    assert_eq!(e.code, ErrorCode::SkillNotFound);
    assert_eq!(e.message, "no version of `summarize` matches `^3`");
    assert_eq!(
        e.hint,
        "versions present: 0.4.1, 1.2.5, 1.3.0, 2.0.0; ask for one of them, e.g. `summarize@2.0.0`"
    );
}

#[test]
fn an_unknown_name_suggests_the_nearest() {
    let e = select("sumarize", &[]).unwrap_err();
    assert_eq!(e.code, ErrorCode::SkillNotFound);
    assert_eq!(e.message, "no skill named `sumarize`");
    assert_eq!(
        e.hint,
        "did you mean `summarize`? `%skill list` shows every skill"
    );
    let e = select("zzzzzzzzzz", &[]).unwrap_err();
    assert!(
        e.hint.starts_with("`%skill list` shows every skill;"),
        "{}",
        e.hint
    );
}

#[test]
fn only_disabled_matches_is_an_error_with_the_reason() {
    let e = select("summarize@1", &[("1.0.0", Some("too slow"))]).unwrap_err();
    assert_eq!(e.message, "`summarize@1.0.0` is disabled: too slow");
    assert_eq!(
        e.hint,
        "`%skill enable summarize@1.0.0` makes it selectable again"
    );
}

#[test]
fn a_malformed_requirement_is_a_validation_error() {
    let e = SkillSpec::parse("summarize@one").unwrap_err();
    assert_eq!(e.code, ErrorCode::ValidationError);
    assert!(
        e.message.starts_with(
            "`summarize@one` does not name a skill: `one` is not a version requirement"
        ),
        "{}",
        e.message
    );
    assert!(SkillSpec::parse("@1.0").is_err());
    assert_eq!(SkillSpec::parse(" a@1.2 ").unwrap().to_string(), "a@1.2");
}
