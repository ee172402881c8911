//! Secret redaction for what the daemon shows operators: `skillkernel
//! config` output and the state dump. Credentials in URLs
//! (`http://user:pass@host`) lose their userinfo; values under secret-looking
//! keys (`key`, `*_token`, `password`, …) are replaced whole, and so is
//! every value of a `headers` table (backends' and the trace exporter's:
//! `Authorization`, `x-api-key` …), whose names are kept.

use std::borrow::Cow;

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// Key segments (split at `_`, `-`, `.`) that mark a value as secret.
/// Whole segments, so `max_tokens` is not a token.
const SECRET_SEGMENTS: [&str; 10] = [
    "key",
    "apikey",
    "token",
    "password",
    "passwd",
    "secret",
    "credential",
    "credentials",
    "auth",
    "authorization",
];

/// A table of HTTP headers: every value may be a credential.
const HEADERS: &str = "headers";

/// Whether a value stored under `key` is secret (the connection file's
/// `key`, `hf_token`, `api_key`, `password` …).
pub fn is_secret_key(key: &str) -> bool {
    key.split(['_', '-', '.'])
        .any(|segment| SECRET_SEGMENTS.contains(&segment.to_ascii_lowercase().as_str()))
}

/// `text` with the userinfo of every `scheme://user:pass@host` in it
/// replaced by [`REDACTED`]; borrowed when there is nothing to hide.
pub fn redact_url(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        let tail = &rest[authority_start..];
        // The authority ends at the path, query, fragment or whitespace.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&rest[..authority_start]);
        match tail[..end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str(REDACTED);
                out.push_str(&tail[userinfo_end..end]);
                changed = true;
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Redacts a JSON document in place (for the state dump).
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(redacted) = redact_url(s) {
                *s = redacted;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if is_secret_key(key) && !item.is_null() {
                    *item = serde_json::Value::String(REDACTED.into());
                } else if let (HEADERS, serde_json::Value::Object(headers)) =
                    (key.as_str(), &mut *item)
                {
                    for value in headers.values_mut() {
                        *value = serde_json::Value::String(REDACTED.into());
                    }
                } else {
                    redact_json(item);
                }
            }
        }
        _ => {}
    }
}

/// Redacts a TOML document in place (for `skillkernel config`).
pub fn redact_toml(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) => {
            if let Cow::Owned(redacted) = redact_url(s) {
                *s = redacted;
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(redact_toml),
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                if is_secret_key(key) {
                    *item = toml::Value::String(REDACTED.into());
                } else if let (HEADERS, toml::Value::Table(headers)) = (key.as_str(), &mut *item) {
                    for (_, value) in headers.iter_mut() {
                        *value = toml::Value::String(REDACTED.into());
                    }
                } else {
                    redact_toml(item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_value_is_redacted_and_the_names_kept() {
        let mut config: toml::Value = toml::from_str(
            "[tracing]\notlp_endpoint = \"https://u:p@otel.example\"\n\
             headers = { Authorization = \"Bearer abc\", x-team = \"ml\" }\n",
        )
        .unwrap();
        redact_toml(&mut config);
        let tracing = &config["tracing"];
        assert_eq!(tracing["headers"]["Authorization"].as_str(), Some(REDACTED));
        assert_eq!(tracing["headers"]["x-team"].as_str(), Some(REDACTED));
        assert_eq!(
            tracing["otlp_endpoint"].as_str(),
            Some("https://***@otel.example")
        );
        let mut json = serde_json::json!({"headers": {"Authorization": "Bearer abc"}});
        redact_json(&mut json);
        assert_eq!(json["headers"]["Authorization"], REDACTED);
    }

    #[test]
    fn url_userinfo_is_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url("http://alice:s3cret@gpu-box:11434/api"),
            "http://***@gpu-box:11434/api"
        );
        assert_eq!(
            redact_url("from https://t@a.example and http://u:p@b?x=1 too"),
            "from https://***@a.example and http://***@b?x=1 too"
        );
        assert!(matches!(
            redact_url("http://gpu-box:11434"),
            Cow::Borrowed("http://gpu-box:11434")
        ));
        // An address after the path is not userinfo.
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(
            redact_url("mail alice@example.org"),
            "mail alice@example.org"
        );
    }

    #[test]
    fn secret_keys_are_matched_by_whole_segments() {
        for key in ["key", "hf_token", "api_key", "password", "client-secret"] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["max_tokens", "keep", "monkey", "signature_scheme", "host"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn documents_are_redacted_in_depth() {
        let mut json = serde_json::json!({
            "connection": {"key": "abc", "ip": "127.0.0.1"},
            "hosts": ["http://u:p@h:1"],
            "max_tokens": 5
        });
        redact_json(&mut json);
        assert_eq!(json["connection"]["key"], REDACTED);
        assert_eq!(json["connection"]["ip"], "127.0.0.1");
        assert_eq!(json["hosts"][0], "http://***@h:1");
        assert_eq!(json["max_tokens"], 5);

        let mut toml: toml::Value = "[models.ollama]\nhost = \"http://u:p@h\"\n[x]\ntoken = 3"
            .parse::<toml::Table>()
            .unwrap()
            .into();
        redact_toml(&mut toml);
        assert_eq!(
            toml["models"]["ollama"]["host"].as_str(),
            Some("http://***@h")
        );
        assert_eq!(toml["x"]["token"].as_str(), Some(REDACTED));
    }
}
