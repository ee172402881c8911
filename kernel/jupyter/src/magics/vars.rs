//! Session variables: `%set`, `%%set`, `%get`, `%unset`, `%vars`.

use serde_json::{Map, Value};
use skillkernel_protocol::content::DisplayData;

use crate::errors::KernelError;
use crate::exec_context::values::{display_value, value_bundle};
use crate::exec_context::ExecContext;
use skillkernel_stdx::text::html_escape;

/// Whether `name` is a valid variable name.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Value {
    let text = text.trim();
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn check_name(magic: &str, name: &str, usage: &str) -> Result<(), KernelError> {
    if is_valid_name(name) {
        Ok(())
    } else if name.is_empty() {
        Err(KernelError::usage(
            magic,
            "a variable name is required",
            usage,
        ))
    } else {
        Err(KernelError::usage(
            magic,
            format!("`{name}` is not a valid name: start with a letter or `_`, then letters, digits or `_`"),
            usage,
        ))
    }
}

/// `%set NAME = VALUE` (also `NAME=VALUE` and `NAME VALUE`).
pub(super) fn set(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    const USAGE: &str = "%set NAME = VALUE";
    let args = args.trim();
    let (name, value) = match args.split_once('=') {
        Some((name, value)) => (name.trim(), value),
        None => match args.split_once(char::is_whitespace) {
            Some((name, value)) => (name.trim(), value),
            None => {
                return Err(KernelError::usage(
                    "set",
                    format!("no value given for `{args}`"),
                    USAGE,
                ))
            }
        },
    };
    check_name("set", name, USAGE)?;
    ctx.shared.set_variable(name.to_owned(), parse_value(value));
    Ok(())
}

/// `%%set NAME`: the body, verbatim, as text.
pub(super) fn set_body(
    ctx: &mut ExecContext<'_>,
    args: &str,
    body: &str,
) -> Result<(), KernelError> {
    let name = args.trim();
    check_name("%set", name, "%%set NAME")?;
    ctx.shared
        .set_variable(name.to_owned(), Value::String(body.to_owned()));
    Ok(())
}

/// `%get NAME`: the value as the cell's result.
pub(super) async fn get(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let name = args.trim();
    check_name("get", name, "%get NAME")?;
    let value = ctx
        .shared
        .variable(name)
        .ok_or_else(|| KernelError::VariableNotFound(name.to_owned()))?;
    ctx.out.result(value_bundle(&value)).await;
    Ok(())
}

/// `%unset NAME`.
pub(super) fn unset(ctx: &mut ExecContext<'_>, args: &str) -> Result<(), KernelError> {
    let name = args.trim();
    check_name("unset", name, "%unset NAME")?;
    match ctx.shared.remove_variable(name) {
        Some(_) => Ok(()),
        None => Err(KernelError::VariableNotFound(name.to_owned())),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "text",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Shortens long values for the table.
fn preview(value: &Value) -> String {
    let text = display_value(value).replace('\n', "⏎");
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// `%vars`: every variable as an HTML table with a text fallback.
pub(super) async fn list(ctx: &mut ExecContext<'_>) -> Result<(), KernelError> {
    let rows: Vec<(String, &'static str, String)> = ctx.shared.with_state(|state| {
        state
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), type_name(v), preview(v)))
            .collect()
    });
    let mut data = Map::new();
    if rows.is_empty() {
        let text = "No session variables. Set one with `%set NAME = VALUE`.";
        data.insert("text/plain".into(), Value::String(text.into()));
        data.insert(
            "text/html".into(),
            Value::String(format!("<p>{}</p>", html_escape(text))),
        );
    } else {
        let width = rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut text = format!("{:<width$}  {:<6}  value\n", "name", "type");
        let mut html = String::from(
            "<table><thead><tr><th>name</th><th>type</th><th>value</th></tr></thead><tbody>",
        );
        for (name, ty, value) in &rows {
            text.push_str(&format!("{name:<width$}  {ty:<6}  {value}\n"));
            html.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{ty}</td><td>{}</td></tr>",
                html_escape(name),
                html_escape(value)
            ));
        }
        html.push_str("</tbody></table>");
        data.insert("text/plain".into(), Value::String(text));
        data.insert("text/html".into(), Value::String(html));
    }
    ctx.out.display(DisplayData::new(data)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_stay_json_and_text_stays_text() {
        assert_eq!(parse_value(" 3 "), Value::from(3));
        assert_eq!(parse_value("[1, 2]"), serde_json::json!([1, 2]));
        assert_eq!(parse_value("French"), Value::from("French"));
        assert_eq!(display_value(&Value::from("x")), "x");
        assert_eq!(display_value(&Value::from(3)), "3");
    }

    #[test]
    fn names_follow_identifier_rules() {
        assert!(is_valid_name("x"));
        assert!(is_valid_name("_a1"));
        assert!(!is_valid_name("1a"));
        assert!(!is_valid_name("a-b"));
        assert!(!is_valid_name(""));
    }
}
