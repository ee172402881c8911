//! Parsing YAML and JSON into a `serde_json::Value` that refuses
//! duplicate keys — both parsers would otherwise keep the last one and
//! silently drop a field the author wrote — and finding the line of the
//! repeated key, which YAML reports at its mapping.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::{Map, Value};

/// A parsed value that refused duplicate keys: both parsers otherwise
/// keep the last, silently dropping a field the author wrote.
pub struct Strict(pub Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("`{v}` is not a finite number")))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|Strict(v)| v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

pub fn duplicate_key(message: &str) -> Option<&str> {
    // serde_norway prefixes the path of a nested mapping (`routing: …`).
    let at = message.find("duplicate key `")? + "duplicate key `".len();
    message[at..].split('`').next()
}

/// The line where `key` appears a second time at one indentation, from
/// line `from` on (best effort: plain keys in block YAML).
pub fn repeated_key_line(text: &str, key: &str, from: usize) -> Option<usize> {
    let mut first_indent = None;
    for (i, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        let body = line.trim_start_matches(' ');
        let (indent, body) = match body.strip_prefix("- ") {
            Some(rest) => (
                line.len() - rest.trim_start_matches(' ').len(),
                rest.trim_start_matches(' '),
            ),
            None => (line.len() - body.len(), body),
        };
        let is_key = body
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start_matches(' ').starts_with(':'));
        match (is_key, first_indent) {
            (true, None) => first_indent = Some(indent),
            (true, Some(first)) if first == indent => return Some(i + 1),
            _ => {}
        }
    }
    None
}
