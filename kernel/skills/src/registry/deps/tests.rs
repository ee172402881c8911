use std::collections::BTreeMap;

use super::*;

/// name → [(version, disabled, [(dep, req)])], preference = highest first.
#[derive(Default)]
struct Fake(BTreeMap<String, Vec<DepOffer>>);

impl Fake {
    fn with(mut self, id: &str, deps: &[(&str, &str)]) -> Self {
        self.add(id, deps, None);
        self
    }

    fn disabled(mut self, id: &str, reason: &str) -> Self {
        self.add(id, &[], Some(reason.to_string()));
        self
    }

    fn add(&mut self, id: &str, deps: &[(&str, &str)], disabled: Option<String>) {
        let (name, version) = id.split_once('@').unwrap();
        let offers = self.0.entry(name.to_string()).or_default();
        offers.push(DepOffer {
            version: Version::parse(version).unwrap(),
            disabled,
            dependencies: deps
                .iter()
                .map(|(n, r)| Dependency {
                    name: n.to_string(),
                    version: VersionReq::parse(r).unwrap(),
                })
                .collect(),
        });
        offers.sort_by(|a, b| b.version.cmp(&a.version));
    }

    fn resolve(&self, id: &str) -> Result<Vec<String>, SkillError> {
        let (name, version) = id.split_once('@').unwrap();
        let version = Version::parse(version).unwrap();
        let offer = self.0[name].iter().find(|o| o.version == version).unwrap();
        let r = resolve(name, &version, &offer.dependencies, self)?;
        Ok(r.picks.iter().map(|(n, v)| format!("{n}@{v}")).collect())
    }
}

impl Catalogue for Fake {
    fn offers(&self, name: &str) -> Vec<DepOffer> {
        self.0.get(name).cloned().unwrap_or_default()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

#[test]
fn transitive_dependencies_each_get_the_highest_matching_enabled_version() {
    let c = Fake::default()
        .with(
            "report@1.0.0",
            &[("summarize", "^1"), ("outline", ">=0.3, <0.5")],
        )
        .with("summarize@1.4.0", &[("tokenize", "~2.1")])
        .with("summarize@2.0.0", &[])
        .with("outline@0.4.2", &[])
        .with("outline@0.5.0", &[])
        .with("tokenize@2.1.7", &[])
        .with("tokenize@2.2.0", &[]);
    assert_eq!(
        c.resolve("report@1.0.0").unwrap(),
        ["outline@0.4.2", "summarize@1.4.0", "tokenize@2.1.7"]
    );
}

#[test]
fn no_dependencies_resolve_to_nothing() {
    let c = Fake::default().with("a@1.0.0", &[]);
    assert_eq!(c.resolve("a@1.0.0").unwrap(), Vec::<String>::new());
}

#[test]
fn a_later_requirement_moves_an_earlier_choice_to_a_version_both_accept() {
    // report takes any summarize (2.0.0 first), but outline needs ^1.
    let c = Fake::default()
        .with("report@1.0.0", &[("summarize", "*"), ("outline", "^1")])
        .with("outline@1.0.0", &[("summarize", "^1")])
        .with("summarize@2.0.0", &[])
        .with("summarize@1.1.0", &[]);
    assert_eq!(
        c.resolve("report@1.0.0").unwrap(),
        ["outline@1.0.0", "summarize@1.1.0"]
    );
}

#[test]
fn a_cycle_is_reported_with_its_path() {
    let c = Fake::default()
        .with("a@1.0.0", &[("b", "^1")])
        .with("b@1.2.0", &[("c", "*")])
        .with("c@0.1.0", &[("a", "^1")]);
    let e = c.resolve("a@1.0.0").unwrap_err();
    assert_eq!(e.code, ErrorCode::DependencyError);
    assert_eq!(
        e.message,
        "dependency cycle: a@1.0.0 → b@1.2.0 → c@0.1.0 → a@1.0.0"
    );
    assert_eq!(e.skill.as_deref(), Some("a@1.0.0"));
    assert!(e.hint.starts_with("remove one of these dependencies"));
}

#[test]
fn a_cycle_not_through_the_root_and_a_self_dependency_are_cycles_too() {
    let c = Fake::default()
        .with("a@1.0.0", &[("b", "*")])
        .with("b@1.0.0", &[("c", "*")])
        .with("c@1.0.0", &[("b", "*")])
        .with("self@1.0.0", &[("self", "*")]);
    assert_eq!(
        c.resolve("a@1.0.0").unwrap_err().message,
        "dependency cycle: b@1.0.0 → c@1.0.0 → b@1.0.0"
    );
    assert_eq!(
        c.resolve("self@1.0.0").unwrap_err().message,
        "dependency cycle: self@1.0.0 → self@1.0.0"
    );
}

#[test]
fn a_missing_skill_is_named_with_the_nearest_name() {
    let c = Fake::default()
        .with("a@1.0.0", &[("sumarize", "^1")])
        .with("summarize@1.0.0", &[]);
    let e = c.resolve("a@1.0.0").unwrap_err();
    assert_eq!(
        e.message,
        "`a@1.0.0` depends on `sumarize` (^1), but no skill named `sumarize` exists"
    );
    assert_eq!(
        e.hint,
        "did you mean `summarize`? Otherwise add `sumarize` to a skill directory, or remove the dependency"
    );
}

#[test]
fn a_missing_version_lists_the_versions_present() {
    let c = Fake::default()
        .with("a@1.0.0", &[("b", "^3")])
        .with("b@1.0.0", &[])
        .with("b@2.1.0", &[]);
    let e = c.resolve("a@1.0.0").unwrap_err();
    assert_eq!(
        e.message,
        "`a@1.0.0` needs `b` ^3, but the versions present are 1.0.0, 2.1.0"
    );
    assert_eq!(
        e.hint,
        "add a version of `b` matching ^3, or change the requirement in `a@1.0.0`"
    );
}

#[test]
fn a_disabled_dependency_is_not_chosen_and_says_why() {
    let c = Fake::default()
        .with("a@1.0.0", &[("b", "^1")])
        .disabled("b@1.0.0", "disabled by ana: too slow");
    let e = c.resolve("a@1.0.0").unwrap_err();
    assert_eq!(
        e.message,
        "`a@1.0.0` needs `b` ^1, but `b@1.0.0` is disabled: disabled by ana: too slow"
    );
    assert_eq!(
        e.hint,
        "enable it (`%skill enable b@1.0.0`), or change the requirement"
    );
}

#[test]
fn two_incompatible_requirements_are_a_conflict_naming_both() {
    let c = Fake::default()
        .with("app@1.0.0", &[("left", "*"), ("right", "*")])
        .with("left@1.0.0", &[("util", "^1")])
        .with("right@1.0.0", &[("util", "^2")])
        .with("util@1.3.0", &[])
        .with("util@2.1.0", &[]);
    let e = c.resolve("app@1.0.0").unwrap_err();
    assert_eq!(e.code, ErrorCode::DependencyError);
    assert_eq!(
        e.message,
        "`left@1.0.0` needs `util` ^1 and `right@1.0.0` needs `util` ^2; no version of `util` \
         satisfies both (present: 1.3.0, 2.1.0)"
    );
    assert_eq!(
        e.hint,
        "make the two requirements overlap, or add a version of `util` that matches both"
    );
}
