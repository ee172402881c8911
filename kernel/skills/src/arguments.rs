//! A skill's arguments as a JSON Schema, for whatever calls a skill as a
//! tool (the tool loop, an MCP client).

use serde_json::{json, Map, Value};

use crate::model::ParamKind;
use crate::Skill;

/// The arguments a skill takes when something else calls it (the tool
/// loop, an MCP client): `input` and its parameters, as a JSON Schema.
pub fn skill_arguments_schema(skill: &Skill) -> Value {
    let mut properties = Map::new();
    properties.insert(
        "input".into(),
        json!({"type": "string", "description": "The text the skill works on."}),
    );
    let mut required = vec![Value::from("input")];
    for p in &skill.parameters {
        let mut schema = match &p.kind {
            ParamKind::String => json!({"type": "string"}),
            ParamKind::Number => json!({"type": "number"}),
            ParamKind::Bool => json!({"type": "boolean"}),
            ParamKind::Enum(values) => json!({"enum": values}),
        };
        if !p.description.is_empty() {
            schema["description"] = json!(p.description);
        }
        properties.insert(p.name.clone(), schema);
        if p.required && p.default.is_none() {
            required.push(Value::from(p.name.clone()));
        }
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}
