//! A finished phase as later templates see it.
//!
//! A phase without an output schema is its text. A phase with one is an
//! object that renders as its text (the JSON it wrote) and whose fields
//! are the JSON answer's: `{{ phases.extract.title }}`,
//! `{% for tag in phases.extract.tags %}`.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};

/// The template value of a phase that answered `text`, parsed as `json`
/// when it had an output schema.
pub(crate) fn phase_value(text: &str, json: Option<&serde_json::Value>) -> Value {
    match json {
        Some(json) => Value::from_object(Structured {
            text: text.to_owned(),
            json: json.clone(),
        }),
        None => Value::from(text),
    }
}

#[derive(Debug)]
struct Structured {
    text: String,
    json: serde_json::Value,
}

impl Object for Structured {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.json {
            serde_json::Value::Object(_) => ObjectRepr::Map,
            serde_json::Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Plain,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match &self.json {
            serde_json::Value::Object(map) => key
                .as_str()
                .and_then(|k| map.get(k))
                .map(Value::from_serialize),
            serde_json::Value::Array(items) => key
                .as_usize()
                .and_then(|i| items.get(i))
                .map(Value::from_serialize),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match &self.json {
            serde_json::Value::Object(map) => {
                Enumerator::Values(map.keys().map(|k| Value::from(k.as_str())).collect())
            }
            serde_json::Value::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::NonEnumerable,
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Template, TemplateValues};
    use std::collections::BTreeMap;

    #[test]
    fn a_structured_phase_renders_as_its_text_and_exposes_its_fields() {
        let json = serde_json::json!({"title": "Rust", "tags": ["a", "b"], "meta": {"n": 2}});
        let text = json.to_string();
        let phases = BTreeMap::from([
            ("extract".to_string(), phase_value(&text, Some(&json))),
            ("plain".to_string(), phase_value("just text", None)),
        ]);
        let t = Template::parse(
            "{{ phases.extract.title }}|{% for t in phases.extract.tags %}{{ t }}{% endfor %}|{{ phases.extract.meta.n }}|{{ phases.extract }}|{{ phases.plain | upper }}",
        )
        .unwrap();
        let out = t
            .render(&TemplateValues {
                input: "",
                phases: &phases,
                params: &serde_json::Map::new(),
            })
            .unwrap();
        assert_eq!(out, format!("Rust|ab|2|{text}|JUST TEXT"));
        let missing = Template::parse("{{ phases.extract.nope }}").unwrap();
        assert!(missing
            .render(&TemplateValues {
                input: "",
                phases: &phases,
                params: &serde_json::Map::new(),
            })
            .is_err());
    }
}
