//! Parameters checked before any model call.
//!
//! `%%run NAME k=v …` gives strings, coerced by the parameter's kind;
//! `skill_request` gives JSON values, type-checked as they are. Required
//! parameters must be given, defaults fill the rest, unknown names are
//! refused with the nearest known one. Every refusal is a
//! `VALIDATION_ERROR` naming the parameter, what was given and what is
//! allowed. This module never calls a model and never guesses a value.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::model::{ParamKind, Parameter};
use crate::template::nearest;
use crate::{ErrorCode, Skill, SkillError};

/// The arguments of one run, as the caller has them.
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    /// `name=value` pairs from a `%%run` line or the CLI.
    Text(Vec<(String, String)>),
    /// A JSON object from `skill_request`.
    Json(Map<String, Value>),
}

impl Default for Args {
    fn default() -> Self {
        Args::Text(Vec::new())
    }
}

impl Args {
    /// Splits `k=v` tokens (already unquoted by the caller) at the first `=`.
    pub fn from_tokens<S: AsRef<str>>(
        tokens: impl IntoIterator<Item = S>,
    ) -> Result<Args, SkillError> {
        let mut pairs = Vec::new();
        for token in tokens {
            let token = token.as_ref();
            let Some((name, value)) = token.split_once('=') else {
                return Err(invalid(
                    format!("argument `{token}` is not of the form name=value"),
                    "write each argument as name=value; quote a value with spaces: tone=\"very formal\"",
                ));
            };
            pairs.push((name.trim().to_owned(), value.to_owned()));
        }
        Ok(Args::Text(pairs))
    }
}

fn invalid(message: impl Into<String>, hint: impl Into<String>) -> SkillError {
    SkillError::new(ErrorCode::ValidationError, message, hint)
}

/// The values a skill's templates see: every declared parameter, given or
/// defaulted; an optional parameter given no value and no default is
/// `null` (falsy in `{% if %}`).
pub fn validate(skill: &Skill, args: &Args) -> Result<Map<String, Value>, SkillError> {
    let given: Vec<(&str, Given<'_>)> = match args {
        Args::Text(pairs) => pairs
            .iter()
            .map(|(k, v)| (k.as_str(), Given::Text(v)))
            .collect(),
        Args::Json(map) => map
            .iter()
            .map(|(k, v)| (k.as_str(), Given::Json(v)))
            .collect(),
    };
    let mut values = Map::new();
    for (name, value) in given {
        let Some(param) = skill.parameter(name) else {
            return Err(unknown(skill, name));
        };
        if values.contains_key(name) {
            return Err(invalid(
                format!("parameter `{name}` is given twice"),
                "give each parameter once",
            ));
        }
        values.insert(name.to_owned(), coerce(param, value)?);
    }
    for param in &skill.parameters {
        if values.contains_key(&param.name) {
            continue;
        }
        let value = match (&param.default, param.required) {
            (Some(default), _) => default.clone(),
            (None, true) => return Err(missing(param)),
            (None, false) => Value::Null,
        };
        values.insert(param.name.clone(), value);
    }
    Ok(values)
}

/// A value as it arrived.
#[derive(Clone, Copy)]
enum Given<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl std::fmt::Display for Given<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Given::Text(s) => write!(f, "`{s}`"),
            Given::Json(v) => write!(f, "{} `{v}`", json_type(v)),
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn coerce(param: &Parameter, given: Given<'_>) -> Result<Value, SkillError> {
    let refuse = |allowed: String| {
        invalid(
            format!(
                "parameter `{}`: got {given}, expected {allowed}",
                param.name
            ),
            hint_for(param),
        )
    };
    let text = match given {
        Given::Text(s) => Some(s),
        Given::Json(Value::String(s)) => Some(s.as_str()),
        Given::Json(_) => None,
    };
    match (&param.kind, given) {
        (ParamKind::Number, Given::Text(s)) => {
            number(s.trim()).ok_or_else(|| refuse("a number".into()))
        }
        (ParamKind::Number, Given::Json(v)) if v.is_number() => Ok(v.clone()),
        (ParamKind::Bool, Given::Text(s)) => boolean(s)
            .map(Value::Bool)
            .ok_or_else(|| refuse("true/false, yes/no or 1/0".into())),
        (ParamKind::Bool, Given::Json(v)) if v.is_boolean() => Ok(v.clone()),
        (ParamKind::Enum(values), _) => {
            let s = text.unwrap_or_default();
            one_of(values, s).ok_or_else(|| refuse(enum_allowed(values, s)))
        }
        (ParamKind::String, _) => match (text, &param.pattern) {
            (None, _) => Err(refuse("a string".into())),
            (Some(s), Some(pattern)) if !full_match(pattern, s) => Err(refuse(format!(
                "a string matching `{}` (all of it)",
                pattern.as_str()
            ))),
            (Some(s), _) => Ok(Value::String(s.to_owned())),
        },
        (kind, _) => Err(refuse(format!("a {}", kind.type_name()))),
    }
}

/// An integer stays an integer (`3`, not `3.0`, in a prompt).
fn number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    s.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

fn boolean(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn one_of(values: &[String], s: &str) -> Option<Value> {
    values
        .iter()
        .any(|v| v == s)
        .then(|| Value::String(s.to_owned()))
}

fn enum_allowed(values: &[String], s: &str) -> String {
    let mut allowed = format!("one of {}", values.join(", "));
    if let Some(n) = nearest(s, values.iter().map(String::as_str)) {
        allowed.push_str(&format!(" (did you mean `{n}`?)"));
    }
    allowed
}

/// Whether all of `s` matches, whatever anchors the pattern was written
/// with. The anchored form is compiled once per pattern.
fn full_match(pattern: &Regex, s: &str) -> bool {
    static ANCHORED: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let mut cache = ANCHORED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let source = pattern.as_str();
    if !cache.contains_key(source) {
        match Regex::new(&format!("^(?:{source})$")) {
            Ok(anchored) => {
                cache.insert(source.to_owned(), anchored);
            }
            // Cannot happen for a pattern that compiled; fall back to it.
            Err(_) => return pattern.find(s).is_some_and(|m| m.as_str() == s),
        }
    }
    cache.get(source).is_some_and(|r| r.is_match(s))
}

fn hint_for(param: &Parameter) -> String {
    let mut hint = format!("`{}` is a {}", param.name, param.kind.type_name());
    if !param.description.is_empty() {
        hint.push_str(&format!(": {}", param.description));
    }
    hint
}

fn unknown(skill: &Skill, name: &str) -> SkillError {
    let known: Vec<&str> = skill.parameters.iter().map(|p| p.name.as_str()).collect();
    let hint = match (nearest(name, known.iter().copied()), known.is_empty()) {
        (Some(n), _) => format!("did you mean `{n}`? It takes: {}", known.join(", ")),
        (None, true) => format!(
            "`{}` takes no parameters; its input is the cell body",
            skill.meta.name
        ),
        (None, false) => format!("it takes: {}", known.join(", ")),
    };
    invalid(
        format!("`{}` has no parameter `{name}`", skill.meta.name),
        hint,
    )
}

fn missing(param: &Parameter) -> SkillError {
    let example = match &param.kind {
        ParamKind::Enum(values) => values.first().cloned().unwrap_or_default(),
        ParamKind::Number => "3".into(),
        ParamKind::Bool => "true".into(),
        ParamKind::String => "…".into(),
    };
    invalid(
        format!("parameter `{}` is required and was not given", param.name),
        format!("{}; give it as {}={example}", hint_for(param), param.name),
    )
}
