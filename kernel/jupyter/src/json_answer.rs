//! A typed (JSON) answer as notebook output: `application/json` for front
//! ends with a JSON viewer (JupyterLab's is collapsible), pretty-printed
//! `text/plain` for the rest and for terminals.

use serde_json::Value;
use skillkernel_protocol::content::{DisplayData, MimeBundle};

/// The display of `json`.
pub fn display(json: &Value) -> DisplayData {
    DisplayData::new(bundle(json))
}

/// The MIME bundle of `json`, for a display or an `execute_result`.
pub fn bundle(json: &Value) -> MimeBundle {
    let mut data = MimeBundle::new();
    data.insert("application/json".into(), json.clone());
    data.insert(
        "text/plain".into(),
        Value::String(skillkernel_skills::output::pretty(json)),
    );
    data
}
