//! Model specifiers: `name[@backend]`, with an optional `local/` prefix
//! (`smollm2-135m@candle`, `llama3.1:8b@ollama`, `local/smollm2-135m`).

use std::fmt;

/// A parsed model specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: String,
    /// The backend asked for, if any.
    pub backend: Option<String>,
}

impl ModelSpec {
    /// Parses a specifier; `None` when the name part is empty.
    pub fn parse(spec: &str) -> Option<ModelSpec> {
        let spec = spec.trim();
        let spec = spec.strip_prefix("local/").unwrap_or(spec);
        let (name, backend) = match spec.rsplit_once('@') {
            Some((name, backend)) if !backend.is_empty() => (name, Some(backend.to_lowercase())),
            Some((name, _)) => (name, None),
            None => (spec, None),
        };
        (!name.is_empty()).then(|| ModelSpec {
            name: name.to_owned(),
            backend,
        })
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Some(b) => write!(f, "{}@{b}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_parse_name_backend_and_local_prefix() {
        assert_eq!(
            ModelSpec::parse("llama3.1:8b@ollama").unwrap(),
            ModelSpec {
                name: "llama3.1:8b".into(),
                backend: Some("ollama".into())
            }
        );
        assert_eq!(
            ModelSpec::parse("local/smollm2-135m").unwrap(),
            ModelSpec {
                name: "smollm2-135m".into(),
                backend: None
            }
        );
        assert_eq!(
            ModelSpec::parse("x@CANDLE").unwrap().to_string(),
            "x@candle"
        );
        assert!(ModelSpec::parse("@candle").is_none());
    }
}
