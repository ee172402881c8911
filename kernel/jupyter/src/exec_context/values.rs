//! How a session variable's value shows: in text, and as a mime bundle
//! (`%get`, `user_expressions`, `{{var}}` in prompts, inspection).

use serde_json::{Map, Value};
use skillkernel_protocol::content::MimeBundle;

/// How a value reads in plain text: strings bare, everything else as JSON.
pub fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The mime bundle for a value: `text/plain`, plus `application/json` for
/// structured values.
pub fn value_bundle(value: &Value) -> MimeBundle {
    let mut data = Map::new();
    data.insert("text/plain".into(), Value::String(display_value(value)));
    if !value.is_string() {
        data.insert("application/json".into(), value.clone());
    }
    data
}
