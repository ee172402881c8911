//! The template contract every skill format shares.
//!
//! Templates are Jinja (minijinja) with three kinds of variable:
//!
//! * `{{input}}` — the text the skill is run on (a `%%run` cell's body);
//! * `{{NAME}}` — a declared parameter;
//! * `{{phases.ID}}` — the output of workflow phase `ID`, which must be one
//!   the phase depends on (directly or through others); a phase with an
//!   output schema also has its fields (`{{phases.ID.title}}`).
//!
//! The check happens when the skill loads ([`Template::check`]): a misspelt
//! variable is a load error naming the line and the closest known name,
//! never a blank in a prompt. Rendering is strict as well, and never
//! HTML-escapes: prompts are plain text.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use thiserror::Error;

/// Names a parameter may not take: the contract's own variables.
pub const RESERVED_NAMES: &[&str] = &["input", "phases"];

const NAME: &str = "template";

/// A parsed template, cheap to clone and to render from many threads.
#[derive(Clone)]
pub struct Template {
    source: Arc<str>,
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

/// Why a template does not load or render.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    /// 1-based line within the template text, when known.
    pub line: Option<usize>,
    /// What to do about it.
    pub remedy: String,
}

/// What a template may refer to.
#[derive(Debug, Default, Clone)]
pub struct Contract {
    /// Declared parameter names.
    pub params: Vec<String>,
    /// Phase ids whose outputs are available (a phase's ancestors).
    pub phases: Vec<String>,
    /// Whether `phases` exists at all (workflows only).
    pub in_workflow: bool,
}

/// The values one rendering sees.
#[derive(Debug, Serialize)]
pub struct TemplateValues<'a> {
    pub input: &'a str,
    /// Each finished phase: its text, or an object that renders as its
    /// text and has its JSON answer's fields.
    pub phases: &'a BTreeMap<String, minijinja::Value>,
    #[serde(flatten)]
    pub params: &'a serde_json::Map<String, serde_json::Value>,
}

impl Template {
    /// Parses `source`; a syntax error names its line.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_keep_trailing_newline(true);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| TemplateError {
                message: format!("template syntax error: {}", detail(&e)),
                line: e.line(),
                remedy: "fix the Jinja syntax: variables are written `{{ name }}`, blocks \
                         `{% if … %}…{% endif %}`"
                    .into(),
            })?;
        Ok(Template {
            source: source.into(),
            env: Arc::new(env),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every variable the template reads from outside, attribute paths
    /// included (`input`, `tone`, `phases.outline`).
    pub fn variables(&self) -> BTreeSet<String> {
        match self.env.get_template(NAME) {
            Ok(t) => t.undeclared_variables(true).into_iter().collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Checks every variable against `contract`; the first unknown one is
    /// an error with its line and the nearest known name.
    pub fn check(&self, contract: &Contract) -> Result<(), TemplateError> {
        for var in self.variables() {
            let (head, rest) = match var.split_once('.') {
                Some((h, r)) => (h, Some(r)),
                None => (var.as_str(), None),
            };
            if head == "input" || contract.params.iter().any(|p| p == head) {
                continue;
            }
            if head == "phases" && contract.in_workflow {
                let Some(id) = rest.map(|r| r.split('.').next().unwrap_or(r)) else {
                    continue; // `phases` as a whole, e.g. iterated
                };
                if contract.phases.iter().any(|p| p == id) {
                    continue;
                }
                return Err(TemplateError {
                    message: format!("`{{{{phases.{id}}}}}` is not a phase this one depends on"),
                    line: self.line_of(&format!("phases.{id}")),
                    remedy: match nearest(id, contract.phases.iter().map(String::as_str)) {
                        Some(n) => format!(
                            "did you mean `phases.{n}`? A phase reads only the outputs of phases in its `depends_on` (or theirs)"
                        ),
                        None => "add the phase to `depends_on`; a phase reads only the outputs of phases it depends on".into(),
                    },
                });
            }
            let mut known: Vec<&str> = vec!["input"];
            known.extend(contract.params.iter().map(String::as_str));
            if contract.in_workflow {
                known.push("phases");
            }
            return Err(TemplateError {
                message: format!("unknown template variable `{head}`"),
                line: self.line_of(head),
                remedy: match nearest(head, known.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`? Otherwise declare `{head}` under `parameters`"),
                    None => format!(
                        "declare `{head}` under `parameters`, or use `{{{{input}}}}` for the text the skill runs on"
                    ),
                },
            });
        }
        Ok(())
    }

    /// Renders with `values`. After [`Template::check`] this fails only on
    /// a runtime error of the template's own logic (a bad filter argument).
    pub fn render(&self, values: &TemplateValues<'_>) -> Result<String, TemplateError> {
        let template = self.env.get_template(NAME).map_err(|e| TemplateError {
            message: detail(&e),
            line: None,
            remedy: String::new(),
        })?;
        template.render(values).map_err(|e| TemplateError {
            message: format!("template failed to render: {}", detail(&e)),
            line: e.line(),
            remedy: "check the value given for each parameter the template uses".into(),
        })
    }

    /// The first line of the template that mentions `name` as a word.
    fn line_of(&self, name: &str) -> Option<usize> {
        self.source
            .lines()
            .position(|l| contains_word(l, name))
            .map(|i| i + 1)
    }
}

fn detail(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

fn contains_word(line: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The candidate closest to `word` by edit distance, if close enough to be
/// a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(params: &[&str], phases: &[&str], in_workflow: bool) -> Contract {
        Contract {
            params: params.iter().map(|s| s.to_string()).collect(),
            phases: phases.iter().map(|s| s.to_string()).collect(),
            in_workflow,
        }
    }

    #[test]
    fn renders_input_parameters_and_phases_without_escaping() {
        let t =
            Template::parse("Translate into {{ language }}:\n{{input}}\n<{{ phases.outline }}>")
                .unwrap();
        t.check(&contract(&["language"], &["outline"], true))
            .unwrap();
        let phases = BTreeMap::from([("outline".to_string(), minijinja::Value::from("a & b"))]);
        let params = serde_json::json!({"language": "French"});
        let out = t
            .render(&TemplateValues {
                input: "x < y",
                phases: &phases,
                params: params.as_object().unwrap(),
            })
            .unwrap();
        assert_eq!(out, "Translate into French:\nx < y\n<a & b>");
    }

    #[test]
    fn a_misspelt_variable_is_named_with_its_line_and_the_nearest_name() {
        let t = Template::parse("Summarize:\n{{ input }}\nin {{ langauge }}").unwrap();
        let err = t.check(&contract(&["language"], &[], false)).unwrap_err();
        assert_eq!(err.message, "unknown template variable `langauge`");
        assert_eq!(err.line, Some(3));
        assert!(
            err.remedy.contains("did you mean `language`"),
            "{}",
            err.remedy
        );
    }

    #[test]
    fn a_phase_that_is_not_an_ancestor_is_refused() {
        let t = Template::parse("{{ phases.draft }}").unwrap();
        let err = t.check(&contract(&[], &["outline"], true)).unwrap_err();
        assert!(err.message.contains("phases.draft"), "{}", err.message);
        assert!(t.check(&contract(&[], &["draft"], true)).is_ok());
        let outside = Template::parse("{{ phases.draft }}").unwrap();
        assert!(outside.check(&contract(&[], &[], false)).is_err());
    }

    #[test]
    fn loop_and_set_variables_are_not_outside_variables() {
        let t = Template::parse("{% set n = 3 %}{% for t in tags %}{{ t }}{{ n }}{% endfor %}")
            .unwrap();
        assert_eq!(t.variables(), BTreeSet::from(["tags".to_string()]));
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = Template::parse("one\ntwo {{ input\nthree").unwrap_err();
        assert!(
            err.message.starts_with("template syntax error"),
            "{}",
            err.message
        );
        assert!(err.line.is_some());
    }

    #[test]
    fn strict_rendering_refuses_a_missing_value() {
        let t = Template::parse("{{ tone }}").unwrap();
        let params = serde_json::Map::new();
        let err = t
            .render(&TemplateValues {
                input: "",
                phases: &BTreeMap::new(),
                params: &params,
            })
            .unwrap_err();
        assert!(err.message.contains("undefined"), "{}", err.message);
    }
}
