//! `output_schema`, in every format that has it: a JSON Schema written
//! inline (a mapping, or a JSON string), or the path of a `.json` file
//! beside the manifest.

use std::path::Path;

use serde_json::Value;

use super::limits::MAX_MANIFEST_BYTES;
use crate::error::LoadError;
use crate::output::OutputSchema;

/// Where the schema was written, for errors.
pub struct At<'a> {
    pub file: &'a Path,
    /// The field's dotted path (`phases[1].output_schema`).
    pub field: String,
    pub line: Option<usize>,
}

impl At<'_> {
    fn error(&self, message: impl Into<String>, remedy: impl Into<String>) -> LoadError {
        LoadError::new(self.file, message, remedy)
            .field(self.field.clone())
            .line(self.line)
    }
}

const REMEDY: &str = "write `output_schema:` as a JSON Schema mapping (`type: object`, \
                      `properties: …`), a JSON string, or the path of a .json file beside the skill";

/// Compiles the schema written as `value` at `at`.
pub fn compile(value: &Value, at: &At<'_>) -> Result<OutputSchema, LoadError> {
    let schema = match value {
        Value::Object(_) => value.clone(),
        Value::String(s) if s.trim_start().starts_with('{') => serde_json::from_str(s)
            .map_err(|e| at.error(format!("the inline schema is not JSON: {e}"), REMEDY))?,
        Value::String(s) => read_file(s, at)?,
        other => {
            return Err(at.error(
                format!("`output_schema` is a {}", super::doc::type_name(other)),
                REMEDY,
            ))
        }
    };
    OutputSchema::compile(schema).map_err(|problem| {
        at.error(
            format!("the output schema is not usable: {problem}"),
            "fix the schema; the engine supports objects, arrays, required, enum, const, \
             string patterns and formats, number bounds, anyOf and $ref to $defs",
        )
    })
}

fn read_file(relative: &str, at: &At<'_>) -> Result<Value, LoadError> {
    let dir = at.file.parent().unwrap_or(Path::new("."));
    let path = dir.join(relative);
    let cannot = |why: String| {
        at.error(
            format!("cannot read the output schema {}: {why}", path.display()),
            REMEDY,
        )
    };
    // The schema goes into prompts and to remote backends: it must be the
    // skill's own file, not one elsewhere on the host.
    let escapes = Path::new(relative).components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    let inside = match (path.canonicalize(), dir.canonicalize()) {
        (Ok(file), Ok(dir)) => file.starts_with(dir),
        _ => true, // a missing file is reported below
    };
    if escapes || !inside {
        return Err(at.error(
            format!("the output schema `{relative}` is outside the skill's folder"),
            "keep the schema file in the skill's folder and name it relative to the manifest",
        ));
    }
    let meta = std::fs::metadata(&path).map_err(|e| cannot(e.to_string()))?;
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(cannot(format!(
            "it is {} bytes, more than the {MAX_MANIFEST_BYTES} a schema may have",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| cannot(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| cannot(format!("it is not JSON ({e})")))
}
