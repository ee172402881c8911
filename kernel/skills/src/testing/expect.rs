//! What a test expects of an answer, and the check.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Expectations; every one given must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Expect {
    /// Texts the answer must contain (one, or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub contains: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub not_contains: Vec<String>,
    /// A regular expression the answer, trimmed, must match (anywhere;
    /// anchor it with `^…$` for the whole).
    pub regex: Option<String>,
    /// The whole answer, both sides trimmed.
    pub equals: Option<String>,
    /// A JSON Schema the answer, read as JSON, must satisfy.
    pub schema: Option<Value>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

impl Expect {
    /// Checks the regex and schema compile.
    pub fn compile(&self) -> Result<(), String> {
        if let Some(r) = &self.regex {
            regex::Regex::new(r).map_err(|e| format!("`regex` does not compile: {e}"))?;
        }
        if let Some(s) = &self.schema {
            jsonschema::validator_for(s)
                .map_err(|e| format!("`schema` is not a JSON Schema: {e}"))?;
        }
        Ok(())
    }

    /// What does not hold of `answer` (`json`: the answer as the skill's
    /// output schema read it, when it has one); empty: it passes.
    pub fn check(&self, answer: &str, json: Option<&Value>) -> Vec<String> {
        let mut failures = Vec::new();
        for text in &self.contains {
            if !answer.contains(text.as_str()) {
                failures.push(format!("does not contain {text:?}"));
            }
        }
        for text in &self.not_contains {
            if answer.contains(text.as_str()) {
                failures.push(format!("contains {text:?}"));
            }
        }
        if let Some(r) = &self.regex {
            match regex::Regex::new(r) {
                Ok(re) if re.is_match(answer.trim()) => {}
                Ok(_) => failures.push(format!("does not match /{r}/")),
                Err(e) => failures.push(format!("`regex` does not compile: {e}")),
            }
        }
        if let Some(expected) = &self.equals {
            if answer.trim() != expected.trim() {
                failures.push(format!("is not {:?}", expected.trim()));
            }
        }
        if let Some(schema) = &self.schema {
            let value = match json {
                Some(v) => Ok(v.clone()),
                None => serde_json::from_str::<Value>(answer.trim()),
            };
            match (value, jsonschema::validator_for(schema)) {
                (Err(e), _) => failures.push(format!("is not JSON ({e})")),
                (_, Err(e)) => failures.push(format!("`schema` is not a JSON Schema: {e}")),
                (Ok(v), Ok(validator)) => {
                    for e in validator.iter_errors(&v) {
                        let at = e.instance_path().to_string();
                        let at = if at.is_empty() {
                            "the answer".to_owned()
                        } else {
                            at
                        };
                        failures.push(format!("{at}: {e}"));
                    }
                }
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_expectation_is_checked_and_named_when_it_fails() {
        let e: Expect = serde_norway::from_str(
            "contains: Bonjour\nnot_contains: [Hello]\nregex: '^Bon'\nequals: Bonjour Ana\n",
        )
        .unwrap();
        assert!(e.check("  Bonjour Ana \n", None).is_empty());
        let failed = e.check("Hello Ana", None);
        assert_eq!(failed.len(), 4, "{failed:?}");
        let typed: Expect =
            serde_norway::from_str("schema: {type: object, required: [name]}\n").unwrap();
        assert!(typed.check(r#"{"name": "Ana"}"#, None).is_empty());
        let failed = typed.check(r#"{"age": 3}"#, None);
        assert!(failed[0].contains("name"), "{failed:?}");
        assert!(typed.check("not json", None)[0].contains("is not JSON"));
    }
}
