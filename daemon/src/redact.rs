//! Redaction of secrets before anything leaves the process as a report
//! (state dumps, `skillkernel config`).
//!
//! A value is secret when its key names one (`key`, `token`, `secret`,
//! `password`, `credentials`, …) — that covers the connection file's HMAC
//! key and API tokens — and a URL keeps its host but loses its
//! `user:password@` part.

use serde_json::Value;

/// What stands in for a removed secret.
pub const REDACTED: &str = "<redacted>";

/// Key names (or suffixes, as in `api_key`, `hf_token`) that hold secrets.
const SECRET_NAMES: [&str; 7] = [
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "credentials",
    "authorization",
];

fn is_secret_key(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES
        .iter()
        .any(|s| name == *s || name.ends_with(&format!("_{s}")) || name.ends_with(&format!("-{s}")))
}

/// Removes `user:password@` from a URL-looking string.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{REDACTED}@{}", &text[..scheme_end + 3], &rest[at + 1..]),
        None => text.to_owned(),
    }
}

/// Redacts secrets anywhere in `value`, in place.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if is_secret_key(name) && !v.is_null() && !v.is_object() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::String(s) => {
            if s.contains("://") {
                *s = redact_url(s);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_by_name_and_url_credentials_are_removed() {
        let mut v = json!({
            "connection": {"key": "abc123", "signature_scheme": "hmac-sha256", "shell_port": 1},
            "models": {"ollama": {"host": "http://bob:hunter2@gpu:11434/x"}, "hf_token": "hf_x"},
            "list": [{"api_key": "k"}],
            "keep": 7
        });
        redact_json(&mut v);
        let text = v.to_string();
        for secret in ["abc123", "hunter2", "bob", "hf_x", "\"k\""] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(
            v["models"]["ollama"]["host"],
            "http://<redacted>@gpu:11434/x"
        );
        assert_eq!(v["connection"]["shell_port"], 1);
        assert_eq!(v["keep"], 7, "`keep` is not a secret");
    }
}
