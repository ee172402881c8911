//! Reading a parsed manifest field by field, with errors that point into
//! the file.
//!
//! Every format parses its text into a `serde_json::Value` first (YAML and
//! JSON alike; syntax errors carry the parser's line), then reads it
//! through [`Obj`]: each accessor checks the type of one field and, when it
//! is wrong, returns a [`LoadError`] naming the field's dotted path and its
//! line (found by [`lines::locate`]). Unknown keys are refused with the
//! nearest known key. This module never decides what a field means.

use std::path::Path;

use serde_json::{Map, Value};

use super::lines;
use super::strict::{duplicate_key, repeated_key_line, Strict};
use crate::error::LoadError;
use crate::template::nearest;

/// A manifest's source: what errors point into.
#[derive(Clone, Copy)]
pub struct Doc<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub json: bool,
    /// Lines before `text` in the file (a `SKILL.md` frontmatter starts
    /// after its `---` line).
    pub line_offset: usize,
}

impl<'a> Doc<'a> {
    pub fn new(file: &'a Path, text: &'a str, json: bool) -> Self {
        Doc {
            file,
            text,
            json,
            line_offset: 0,
        }
    }

    /// Parses the text, YAML or JSON; a syntax error names its line.
    pub fn parse(&self) -> Result<Value, LoadError> {
        let parsed = if self.json {
            serde_json::from_str(self.text)
                .map(|Strict(v)| v)
                .map_err(|e| {
                    let line = (e.line() > 0).then_some(e.line());
                    (strip_position(&e.to_string()), line)
                })
        } else {
            serde_norway::from_str(self.text)
                .map(|Strict(v)| v)
                .map_err(|e| {
                    (
                        strip_position(&e.to_string()),
                        e.location().map(|l| l.line()),
                    )
                })
        };
        parsed.map_err(|(message, mut line)| {
            let what = if self.json { "JSON" } else { "YAML" };
            let mut remedy =
                format!("fix the {what} syntax at that line (indentation, quoting, brackets)");
            if let Some(key) = duplicate_key(&message) {
                remedy = format!("write `{key}` once: remove or merge the repeated one");
                // YAML reports a duplicate at its mapping; point at the repeat.
                if let (false, Some(from)) = (self.json, line) {
                    line = repeated_key_line(self.text, key, from).or(line);
                }
            }
            LoadError::new(self.file, format!("invalid {what}: {message}"), remedy)
                .line(line.map(|l| l + self.line_offset))
        })
    }

    /// The line of `field` (a dotted path), when it can be found.
    pub fn line_of(&self, field: &str) -> Option<usize> {
        lines::locate(self.text, field, self.json).map(|l| l + self.line_offset)
    }

    /// An error about `field`, at its line.
    pub fn error(
        &self,
        field: &str,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> LoadError {
        let e = LoadError::new(self.file, message, remedy);
        if field.is_empty() {
            return e;
        }
        e.field(field).line(self.line_of(field))
    }
}

/// The parsers end their messages with the position; the error has its
/// own line field.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// What a value is, for "expected a string, found a list".
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// `parent.key` / `key`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// One mapping of the manifest, at `path`.
pub struct Obj<'a> {
    pub doc: Doc<'a>,
    pub path: String,
    pub map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// `value` as a mapping, or an error naming `path`.
    pub fn new(doc: Doc<'a>, path: &str, value: &'a Value) -> Result<Self, LoadError> {
        match value {
            Value::Object(map) => Ok(Obj {
                doc,
                path: path.to_string(),
                map,
            }),
            other => Err(doc.error(
                path,
                format!("expected a mapping of fields, found {}", type_name(other)),
                if path.is_empty() {
                    "a skill manifest is a mapping: `name: …`, `description: …` on their own lines"
                        .to_string()
                } else {
                    format!("write `{path}` as `key: value` lines indented under it")
                },
            )),
        }
    }

    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// The value of `key`; an explicit `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Compiles the `output_schema` under `key`, if there is one.
    pub fn output_schema(
        &self,
        key: &str,
    ) -> Result<Option<crate::output::OutputSchema>, LoadError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let field = self.field(key);
        let at = super::output_schema::At {
            file: self.doc.file,
            line: self.doc.line_of(&field),
            field,
        };
        super::output_schema::compile(value, &at).map(Some)
    }

    pub fn error(
        &self,
        key: &str,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> LoadError {
        self.doc.error(&self.field(key), message, remedy)
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value, example: &str) -> LoadError {
        self.error(
            key,
            format!("expected {expected}, found {}", type_name(found)),
            format!("write it as `{key}: {example}`"),
        )
    }

    /// A missing required field: the error points at the mapping holding it.
    pub fn missing(&self, key: &str, remedy: impl Into<String>) -> LoadError {
        let e = LoadError::new(
            self.doc.file,
            format!("missing required field `{key}`"),
            remedy,
        )
        .field(self.field(key));
        e.line(if self.path.is_empty() {
            None
        } else {
            self.doc.line_of(&self.path)
        })
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, "a string", v, "\"…\"")),
        }
    }

    pub fn req_str(&self, key: &str, remedy: &str) -> Result<&'a str, LoadError> {
        self.str(key)?.ok_or_else(|| self.missing(key, remedy))
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a whole number ≥ 0", v, "4")),
        }
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a number", v, "0.7")),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "true or false", v, "true")),
        }
    }

    pub fn list(&self, key: &str) -> Result<Option<&'a Vec<Value>>, LoadError> {
        self.list_like(key, "[a, b]")
    }

    /// A list whose items have a shape of their own: `example` shows one
    /// in the hint when the value is not a list.
    pub fn list_like(&self, key: &str, example: &str) -> Result<Option<&'a Vec<Value>>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(v) => Err(self.wrong_type(key, "a list", v, example)),
        }
    }

    /// A list of strings; each item's path is `key[i]`.
    pub fn str_list(&self, key: &str) -> Result<Vec<String>, LoadError> {
        let Some(items) = self.list(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.doc.error(
                    &format!("{}[{i}]", self.field(key)),
                    format!("expected a string, found {}", type_name(other)),
                    "quote the item: `- \"…\"`",
                )),
            })
            .collect()
    }

    /// A nested mapping.
    pub fn obj(&self, key: &str) -> Result<Option<Obj<'a>>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Obj::new(self.doc, &self.field(key), v).map(Some),
        }
    }

    /// A mapping of strings to strings (`env`, `metadata`).
    pub fn str_map(&self, key: &str) -> Result<Vec<(String, String)>, LoadError> {
        let Some(obj) = self.obj(key)? else {
            return Ok(Vec::new());
        };
        obj.map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(obj.error(
                    k,
                    format!("expected a string, found {}", type_name(other)),
                    format!("quote the value: `{k}: \"…\"`"),
                )),
            })
            .collect()
    }

    /// Refuses the first key not in `known`, naming the nearest known one.
    pub fn deny_unknown(&self, known: &[&str], what: &str) -> Result<(), LoadError> {
        let Some(key) = self.map.keys().find(|k| !known.contains(&k.as_str())) else {
            return Ok(());
        };
        let remedy = match nearest(key, known.iter().copied()) {
            Some(n) => format!("did you mean `{n}`?"),
            None => format!("{what} accepts: {}", known.join(", ")),
        };
        Err(self.error(key, format!("unknown field `{key}` in {what}"), remedy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<T>(text: &str, f: impl FnOnce(Obj<'_>) -> T) -> T {
        let doc = Doc::new(Path::new("s.yaml"), text, false);
        let value = doc.parse().unwrap();
        f(Obj::new(doc, "", &value).unwrap())
    }

    #[test]
    fn a_yaml_syntax_error_names_its_line_without_repeating_it() {
        let doc = Doc::new(Path::new("s.yaml"), "name: a\nlist: [1, 2\nx: 1\n", false);
        let e = doc.parse().unwrap_err();
        assert!(e.line.is_some_and(|l| l >= 2), "{e:?}");
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
        assert!(!e.message.contains(" at line "), "{}", e.message);
    }

    #[test]
    fn a_wrong_type_names_the_field_and_its_line() {
        let e = with("name: a\nretries:\n  count: [1]\n", |o| {
            o.obj("retries").unwrap().unwrap().u64("count").unwrap_err()
        });
        assert_eq!(e.field.as_deref(), Some("retries.count"));
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("found a list"), "{}", e.message);
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        let e = with("name: a\ndescripton: b\n", |o| {
            o.deny_unknown(&["name", "description"], "a skill manifest")
                .unwrap_err()
        });
        assert_eq!(e.line, Some(2));
        assert_eq!(e.remedy, "did you mean `description`?");
    }

    #[test]
    fn a_missing_nested_field_points_at_its_mapping() {
        let e = with("name: a\nrouting:\n  modle: x\n", |o| {
            let r = o.obj("routing").unwrap().unwrap();
            r.req_str("model", "name a model").unwrap_err()
        });
        assert_eq!(e.field.as_deref(), Some("routing.model"));
        assert_eq!(e.line, Some(2));
    }
}
