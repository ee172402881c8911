//! How templates name phases where [`Template::check`] cannot see them.
//!
//! A hyphenated phase id cannot be an attribute (`{{ phases.draft-1 }}`
//! is `phases.draft` minus 1), so it is read by subscript,
//! `{{ phases["draft-1"] }}`, which the check does not follow. This module
//! refuses the first form with the right remedy and checks the ids of the
//! second against the phases the template may read.

use std::sync::OnceLock;

use regex::Regex;

use crate::template::{Contract, Template};

/// A problem: message, remedy, 1-based line in the template.
type Problem = (String, String, Option<usize>);

fn each_match<'t, 'r>(
    t: &'t Template,
    re: &'r Regex,
) -> impl Iterator<Item = (usize, regex::Captures<'t>)> + use<'t, 'r> {
    t.source()
        .lines()
        .enumerate()
        .flat_map(move |(i, line)| re.captures_iter(line).map(move |c| (i + 1, c)))
}

/// `{{ phases.draft-1 }}` inside a tag: refused, with the subscript form.
pub fn check_hyphenated(t: &Template, contract: &Contract) -> Result<(), Problem> {
    static ATTR: OnceLock<Regex> = OnceLock::new();
    let re = ATTR.get_or_init(|| {
        Regex::new(r"\{[{%][^}]*\bphases\.([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+)")
            .expect("a valid regex")
    });
    if !contract.in_workflow {
        return Ok(());
    }
    match each_match(t, re).next() {
        Some((line, cap)) => {
            let id = &cap[1];
            Err((
                format!(
                    "`phases.{id}` reads as a subtraction: a phase id with `-` is not an attribute"
                ),
                format!("write `{{{{ phases[\"{id}\"] }}}}`"),
                Some(line),
            ))
        }
        None => Ok(()),
    }
}

/// `{{ phases["draft-1"] }}`: the id must be one the template may read.
pub fn check_subscripts(t: &Template, contract: &Contract) -> Result<(), Problem> {
    static SUBSCRIPT: OnceLock<Regex> = OnceLock::new();
    let re = SUBSCRIPT.get_or_init(|| {
        Regex::new(r#"\bphases\s*\[\s*(?:"([^"]*)"|'([^']*)')\s*\]"#).expect("a valid regex")
    });
    if !contract.in_workflow {
        return Ok(());
    }
    for (line, cap) in each_match(t, re) {
        let id = cap.get(1).or(cap.get(2)).map_or("", |m| m.as_str());
        if !contract.phases.iter().any(|p| p == id) {
            return Err((
                format!("`phases[\"{id}\"]` is not a phase this one depends on"),
                "add the phase to `depends_on`; a phase reads only the outputs of phases it depends on (or theirs)".into(),
                Some(line),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(phases: &[&str]) -> Contract {
        Contract {
            params: vec![],
            phases: phases.iter().map(|p| p.to_string()).collect(),
            in_workflow: true,
        }
    }

    #[test]
    fn a_subscript_must_name_an_ancestor() {
        let ok = Template::parse("{{ phases[\"pros-list\"] }}").unwrap();
        assert!(check_subscripts(&ok, &contract(&["pros-list"])).is_ok());
        let bad = Template::parse("a\n{{ phases['cons-list'] }}").unwrap();
        let (message, _, line) = check_subscripts(&bad, &contract(&["pros-list"])).unwrap_err();
        assert!(message.contains("cons-list"), "{message}");
        assert_eq!(line, Some(2));
    }

    #[test]
    fn a_hyphenated_attribute_gets_the_subscript_remedy() {
        let t = Template::parse("Draft: {{ phases.draft-1 }}").unwrap();
        let (message, remedy, _) = check_hyphenated(&t, &contract(&["draft-1"])).unwrap_err();
        assert!(
            message.contains("`phases.draft-1` reads as a subtraction"),
            "{message}"
        );
        assert_eq!(remedy, "write `{{ phases[\"draft-1\"] }}`");
        let prose = Template::parse("see phases.draft-1 in {{ input }}").unwrap();
        assert!(check_hyphenated(&prose, &contract(&[])).is_ok());
    }
}
