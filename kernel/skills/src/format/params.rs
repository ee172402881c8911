//! Typed parameters of a native manifest, checked at load: identifier
//! names that are not the contract's own (`input`, `phases`), unique; enum
//! values non-empty and unique; a pattern that compiles (anchored: the
//! whole value must match); a default valid for its type and pattern; not
//! both `required` and a `default`.

use serde_json::Value;

use super::doc::{type_name, Obj};
use crate::error::LoadError;
use crate::model::{ParamKind, Parameter};
use crate::template::{nearest, RESERVED_NAMES};

pub const PARAM_KEYS: &[&str] = &[
    "name",
    "type",
    "values",
    "pattern",
    "required",
    "default",
    "description",
];
const PARAM_TYPES: &[&str] = &["string", "number", "bool", "enum"];

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `parameters` list of `root`.
pub fn parameters(root: &Obj<'_>) -> Result<Vec<Parameter>, LoadError> {
    let Some(items) = root.list_like("parameters", "[{name: language, type: string}]")? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Parameter> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let o = Obj::new(root.doc, &format!("parameters[{i}]"), item)?;
        let p = parameter(&o)?;
        if out.iter().any(|q| q.name == p.name) {
            return Err(o.error(
                "name",
                format!("parameter `{}` is declared twice", p.name),
                "declare each parameter once",
            ));
        }
        out.push(p);
    }
    Ok(out)
}

fn parameter(o: &Obj<'_>) -> Result<Parameter, LoadError> {
    o.deny_unknown(PARAM_KEYS, "a parameter")?;
    let name = o.req_str("name", "add `name:`, the variable the templates use")?;
    if !is_identifier(name) {
        return Err(o.error(
            "name",
            format!("parameter name `{name}` is not an identifier"),
            "use letters, digits and `_`, not starting with a digit (`target_language`)",
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(o.error(
            "name",
            format!("`{name}` is reserved by the template contract"),
            format!("rename it; `{{{{{name}}}}}` is always provided by the kernel"),
        ));
    }
    let kind = kind(o)?;
    let pattern = pattern(o, &kind)?;
    let required = o.bool("required")?.unwrap_or(false);
    let default = o.get("default").cloned();
    if let Some(d) = &default {
        if required {
            return Err(o.error(
                "default",
                format!("parameter `{name}` is required and has a default"),
                "drop `required: true` (the default is used when none is given) or drop the default",
            ));
        }
        check_default(o, name, &kind, pattern.as_ref(), d)?;
    }
    Ok(Parameter {
        name: name.to_string(),
        kind,
        description: o.str("description")?.unwrap_or("").to_string(),
        required,
        default,
        pattern,
    })
}

fn kind(o: &Obj<'_>) -> Result<ParamKind, LoadError> {
    let t = o.str("type")?.unwrap_or("string");
    let kind = match t {
        "string" => ParamKind::String,
        "number" => ParamKind::Number,
        "bool" => ParamKind::Bool,
        "enum" => {
            let values = o.str_list("values")?;
            if values.is_empty() {
                return Err(o.error(
                    if o.has("values") { "values" } else { "type" },
                    "an enum parameter has no `values`",
                    "list the allowed values: `values: [French, German]`",
                ));
            }
            if let Some((i, v)) = values
                .iter()
                .enumerate()
                .find(|(i, v)| values[..*i].contains(v))
            {
                return Err(o.doc.error(
                    &format!("{}[{i}]", o.field("values")),
                    format!("value `{v}` is listed twice"),
                    "list each value once",
                ));
            }
            return Ok(ParamKind::Enum(values));
        }
        other => {
            let remedy = match nearest(other, PARAM_TYPES.iter().copied()) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("use one of {}", PARAM_TYPES.join(", ")),
            };
            return Err(o.error("type", format!("unknown parameter type `{other}`"), remedy));
        }
    };
    if o.has("values") {
        return Err(o.error(
            "values",
            format!("`values` is for enum parameters, and this one is a {t}"),
            "set `type: enum`, or remove `values`",
        ));
    }
    Ok(kind)
}

fn pattern(o: &Obj<'_>, kind: &ParamKind) -> Result<Option<regex::Regex>, LoadError> {
    let Some(p) = o.str("pattern")? else {
        return Ok(None);
    };
    if *kind != ParamKind::String {
        return Err(o.error(
            "pattern",
            format!(
                "`pattern` is for string parameters, and this one is a {}",
                kind.type_name()
            ),
            "remove `pattern`, or make the parameter a string",
        ));
    }
    regex::Regex::new(&format!("^(?:{p})$"))
        .map(Some)
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("").trim();
            let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
            o.error(
                "pattern",
                format!("`pattern` does not compile: {last}"),
                "write a Rust regex (no look-around); the whole value must match",
            )
        })
}

fn check_default(
    o: &Obj<'_>,
    name: &str,
    kind: &ParamKind,
    pattern: Option<&regex::Regex>,
    d: &Value,
) -> Result<(), LoadError> {
    let bad = |message: String, remedy: String| Err(o.error("default", message, remedy));
    match (kind, d) {
        (ParamKind::String, Value::String(s)) => match pattern {
            Some(re) if !re.is_match(s) => bad(
                format!("default `{s}` of `{name}` does not match its pattern"),
                "change the default or the pattern".into(),
            ),
            _ => Ok(()),
        },
        (ParamKind::Number, Value::Number(_)) | (ParamKind::Bool, Value::Bool(_)) => Ok(()),
        (ParamKind::Enum(values), Value::String(s)) if values.contains(s) => Ok(()),
        (ParamKind::Enum(values), Value::String(s)) => bad(
            format!("default `{s}` of `{name}` is not one of its values"),
            match nearest(s, values.iter().map(String::as_str)) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("use one of {}", values.join(", ")),
            },
        ),
        (kind, other) => bad(
            format!(
                "default of `{name}` is {}, and the parameter is a {}",
                type_name(other),
                kind.type_name()
            ),
            format!("give a {} default", kind.type_name()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::doc::Doc;
    use std::path::Path;

    fn load(text: &str) -> Result<Vec<Parameter>, LoadError> {
        let doc = Doc::new(Path::new("p.yaml"), text, false);
        let value = doc.parse()?;
        parameters(&Obj::new(doc, "", &value)?)
    }

    #[test]
    fn typed_parameters_load_with_anchored_patterns() {
        let ps = load(
            "parameters:\n  - name: language\n    type: enum\n    values: [French, German]\n    default: French\n  - name: code\n    pattern: '[a-z]{2}'\n    default: fr\n  - name: depth\n    type: number\n    required: true\n",
        )
        .unwrap();
        assert_eq!(
            ps[0].kind,
            ParamKind::Enum(vec!["French".into(), "German".into()])
        );
        let re = ps[1].pattern.as_ref().unwrap();
        assert!(re.is_match("fr") && !re.is_match("fra"));
        assert!(ps[2].required);
    }

    #[test]
    fn a_bad_enum_default_names_its_line_and_the_nearest_value() {
        let e = load("parameters:\n  - name: language\n    type: enum\n    values: [French, German]\n    default: Frnch\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("parameters[0].default"));
        assert_eq!(e.line, Some(5));
        assert_eq!(e.remedy, "did you mean `French`?");
    }

    #[test]
    fn names_must_be_identifiers_not_reserved_and_unique() {
        let e = load("parameters:\n  - name: 2x\n").unwrap_err();
        assert!(e.message.contains("not an identifier"), "{}", e.message);
        let e = load("parameters:\n  - name: input\n").unwrap_err();
        assert!(e.message.contains("reserved"), "{}", e.message);
        let e = load("parameters:\n  - name: a\n  - name: a\n").unwrap_err();
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn type_mismatches_are_refused() {
        let e =
            load("parameters:\n  - name: a\n    type: number\n    default: many\n").unwrap_err();
        assert!(
            e.message
                .contains("a string, and the parameter is a number"),
            "{}",
            e.message
        );
        let e = load("parameters:\n  - name: a\n    type: enum\n").unwrap_err();
        assert!(e.message.contains("no `values`"), "{}", e.message);
        let e = load("parameters:\n  - name: a\n    pattern: '('\n").unwrap_err();
        assert!(e.message.contains("does not compile"), "{}", e.message);
        let e = load("parameters:\n  - name: a\n    required: true\n    default: x\n").unwrap_err();
        assert!(
            e.message.contains("required and has a default"),
            "{}",
            e.message
        );
        let e = load("parameters:\n  - name: a\n    type: strng\n").unwrap_err();
        assert_eq!(e.remedy, "did you mean `string`?");
    }
}
