//! Plain-text tables and values for the terminal.

use serde_json::Value;

/// A JSON value as a table cell: strings bare, `null` empty.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints `rows` under `header`, each column as wide as its widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", skillkernel_stdx::text::text_table(header, rows));
}
