//! Typed answers: the JSON Schema a skill's (or a phase's) answer must
//! satisfy, compiled once at load and checked after every call.
//!
//! The schema goes to the model call as an [`OutputFormat`], so backends
//! that can constrain generation do (the embedded engine always does);
//! the answer is validated here whatever the backend, because one that
//! cannot constrain (Anthropic, an old server) may still write anything.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use skillkernel_providers::OutputFormat;

use crate::{ErrorCode, SkillError};

/// The most validation errors one message lists.
const ERRORS_SHOWN: usize = 3;
/// The most of an offending answer an error shows.
const SHOWN_ANSWER: usize = 600;

/// Why a schema does not load: where in the schema, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaProblem {
    /// A JSON pointer into the schema (`/properties/age/type`), empty for
    /// the schema as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "at schema path `{}`: {}", self.path, self.message)
        }
    }
}

/// A compiled output schema.
#[derive(Clone)]
pub struct OutputSchema {
    schema: Value,
    validator: Arc<jsonschema::Validator>,
    /// "Any JSON object" rather than a schema of the user's: backends get
    /// their JSON mode (Ollama's `"json"`, OpenAI's `json_object`).
    any_object: bool,
}

impl fmt::Debug for OutputSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OutputSchema").field(&self.schema).finish()
    }
}

impl PartialEq for OutputSchema {
    fn eq(&self, other: &Self) -> bool {
        self.schema == other.schema
    }
}

/// Why an answer is not the JSON its schema asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// What is wrong, for the user and for the model's second try.
    pub reason: String,
}

impl Invalid {
    /// The `VALIDATION_ERROR` of an answer that missed its schema twice;
    /// `place` names what answered ("the answer", "phase `extract`").
    pub fn into_error(self, place: &str, answer: &str) -> SkillError {
        SkillError::new(
            ErrorCode::ValidationError,
            format!(
                "{place} does not match its output schema, also when asked again: {}",
                self.reason
            ),
            format!(
                "the model wrote: {}\nuse a model that can follow the schema (the embedded engine, Ollama and OpenAI-compatible servers hold generation to it), or loosen the schema",
                shorten(answer)
            ),
        )
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= SHOWN_ANSWER {
        return text.to_owned();
    }
    let cut: String = text.chars().take(SHOWN_ANSWER).collect();
    format!("{cut}… ({} characters in all)", text.chars().count())
}

impl OutputSchema {
    /// Compiles `schema`: it must be a valid JSON Schema and one the
    /// embedded engine can turn into a token constraint.
    pub fn compile(schema: Value) -> Result<Self, SchemaProblem> {
        if !schema.is_object() {
            return Err(SchemaProblem {
                path: String::new(),
                message: "an output schema must be a JSON object, e.g. `{\"type\": \"object\", \"properties\": {…}}`".into(),
            });
        }
        let validator = jsonschema::validator_for(&schema).map_err(|e| SchemaProblem {
            path: e.instance_path().to_string(),
            message: e.to_string(),
        })?;
        let format = OutputFormat::JsonSchema {
            schema: schema.clone(),
        };
        skillkernel_providers::candle::check_output_format(&format).map_err(|e| SchemaProblem {
            path: String::new(),
            message: e.to_string(),
        })?;
        Ok(OutputSchema {
            schema,
            validator: Arc::new(validator),
            any_object: false,
        })
    }

    /// "Any JSON object".
    pub fn any_object() -> Self {
        // A fixed schema that compiles: no error is possible here.
        let schema = serde_json::json!({"type": "object"});
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|_| unreachable!("{{\"type\": \"object\"}} is a valid schema"));
        OutputSchema {
            schema,
            validator: Arc::new(validator),
            any_object: true,
        }
    }

    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// What the model call is asked for.
    pub fn format(&self) -> OutputFormat {
        if self.any_object {
            return OutputFormat::Json;
        }
        OutputFormat::JsonSchema {
            schema: self.schema.clone(),
        }
    }

    /// The answer as JSON, if it is JSON valid for the schema. Text around
    /// a single JSON value (a fenced block from a chatty server) is
    /// tolerated; the value alone is checked.
    pub fn check(&self, text: &str) -> Result<Value, Invalid> {
        let value = parse(text).map_err(|e| Invalid {
            reason: format!("the answer is not JSON ({e})"),
        })?;
        let errors: Vec<String> = self
            .validator
            .iter_errors(&value)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                format!("at `{at}`: {e}")
            })
            .collect();
        if errors.is_empty() {
            return Ok(value);
        }
        let mut reason = errors
            .iter()
            .take(ERRORS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if errors.len() > ERRORS_SHOWN {
            reason.push_str(&format!(" (and {} more)", errors.len() - ERRORS_SHOWN));
        }
        Err(Invalid { reason })
    }

    /// The instruction a prompt gets so the model knows the shape it is
    /// held to (constraining alone leaves it guessing what the keys mean).
    pub fn instruction(&self) -> String {
        if self.any_object {
            return "Answer with only a JSON object.".into();
        }
        format!(
            "Answer with only a JSON value valid for this JSON Schema:\n{}",
            self.schema
        )
    }

    /// The message of the second try, after an answer failed validation.
    pub fn retry_message(&self, invalid: &Invalid) -> String {
        format!(
            "That answer is not valid: {}.\n\n{}",
            invalid.reason,
            self.instruction()
        )
    }
}

/// The JSON in `text`: all of it, or the outermost `{…}` / `[…]` in it.
fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let trimmed = text.trim();
    match serde_json::from_str(trimmed) {
        Ok(v) => Ok(v),
        Err(first) => {
            let start = trimmed.find(['{', '[']);
            let end = trimmed.rfind(['}', ']']);
            match (start, end) {
                (Some(s), Some(e)) if s < e => {
                    serde_json::from_str(&trimmed[s..=e]).map_err(|_| first)
                }
                _ => Err(first),
            }
        }
    }
}

/// A readable text form of a JSON answer: pretty-printed.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person() -> OutputSchema {
        OutputSchema::compile(json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
            "required": ["name", "age"]
        }))
        .unwrap()
    }

    #[test]
    fn valid_answers_come_back_as_values() {
        let v = person().check(r#"{"name": "Ann", "age": 3}"#).unwrap();
        assert_eq!(v["age"], 3);
        let fenced = person()
            .check("```json\n{\"name\": \"Ann\", \"age\": 3}\n```")
            .unwrap();
        assert_eq!(fenced["name"], "Ann");
    }

    #[test]
    fn invalid_answers_say_where_and_why() {
        let e = person().check(r#"{"name": "Ann", "age": -1}"#).unwrap_err();
        assert!(e.reason.contains("/age"), "{}", e.reason);
        let e = person().check("Ann is three").unwrap_err();
        assert!(e.reason.contains("not JSON"), "{}", e.reason);
    }

    #[test]
    fn a_broken_schema_names_its_path() {
        let e = OutputSchema::compile(json!({"type": "object", "properties": {"a": {"type": 5}}}))
            .unwrap_err();
        assert!(e.path.contains("properties"), "{e:?}");
        let e = OutputSchema::compile(json!("string")).unwrap_err();
        assert!(e.message.contains("JSON object"), "{e:?}");
    }
}
