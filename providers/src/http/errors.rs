//! A remote backend's failures as [`ProviderError`]s that say what to do,
//! and what each means for the request: try another host, wait and retry,
//! or give up.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::dialect::Dialect;
use super::openai::preview;
use crate::ProviderError;

/// What a failed attempt means for the request.
#[derive(Debug)]
pub enum Next {
    /// The host is at fault (down, overloaded, 5xx): take it out, try another.
    OtherHost,
    /// The server asks to come back later (429).
    RetryAfter(Option<Duration>),
    /// The request itself is wrong (auth, unknown model, bad input): no
    /// other host will answer differently.
    GiveUp,
}

/// One failed attempt.
#[derive(Debug)]
pub struct Failure {
    pub error: ProviderError,
    pub next: Next,
}

/// The request never got an HTTP answer.
pub fn transport(backend: &str, host: &str, err: &reqwest::Error) -> Failure {
    let reason = if err.is_connect() {
        format!("cannot connect to {host}: {}", root_cause(err))
    } else if err.is_timeout() {
        format!("{host} did not answer in time")
    } else {
        format!("the connection to {host} failed: {}", root_cause(err))
    };
    Failure {
        error: ProviderError::Unavailable {
            backend: backend.to_owned(),
            reason,
        },
        next: Next::OtherHost,
    }
}

/// The context an HTTP error answer is judged in.
pub struct Asked<'a> {
    pub backend: &'a str,
    pub host: &'a str,
    pub model: Option<&'a str>,
    pub api_key_env: Option<&'a str>,
    /// What the backend is known to serve, for an unknown model's hint.
    pub known_models: &'a [String],
}

/// An HTTP answer that is not a success.
pub fn status(
    dialect: &dyn Dialect,
    asked: &Asked<'_>,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Failure {
    let message = message_of(dialect, body).unwrap_or_else(|| format!("HTTP {status}"));
    let backend = asked.backend.to_owned();
    let unavailable = |reason: String| ProviderError::Unavailable {
        backend: backend.clone(),
        reason,
    };
    match status.as_u16() {
        401 | 403 => Failure {
            error: unavailable(match asked.api_key_env {
                Some(var) => format!(
                    "{} refused the API key in ${var} ({message}); check that variable",
                    asked.host
                ),
                None => format!(
                    "{} wants an API key ({message}); set `api_key_env` in [models.backends.{}] to the variable that holds it",
                    asked.host, asked.backend
                ),
            }),
            next: Next::GiveUp,
        },
        404 if asked.model.is_some() && mentions_model(&message) => Failure {
            error: unknown_model(asked, &message),
            next: Next::GiveUp,
        },
        429 => Failure {
            error: unavailable(format!("{} is rate-limiting requests ({message})", asked.host)),
            next: Next::RetryAfter(retry_after),
        },
        s if s >= 500 => Failure {
            error: unavailable(format!("{} failed: {message}", asked.host)),
            next: Next::OtherHost,
        },
        400 | 404 | 422 if asked.model.is_some() && mentions_model(&message) => Failure {
            error: unknown_model(asked, &message),
            next: Next::GiveUp,
        },
        _ => Failure {
            error: ProviderError::Other(format!(
                "{} at {} refused the request: {message}",
                asked.backend, asked.host
            )),
            next: Next::GiveUp,
        },
    }
}

fn mentions_model(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("model") || m.contains("not found") || m.contains("does not exist")
}

fn unknown_model(asked: &Asked<'_>, message: &str) -> ProviderError {
    let model = asked.model.unwrap_or_default();
    let hint = if asked.known_models.is_empty() {
        format!("{} at {} says \"{message}\"", asked.backend, asked.host)
    } else {
        format!(
            "{} at {} says \"{message}\"; it serves: {}",
            asked.backend,
            asked.host,
            asked.known_models.join(", ")
        )
    };
    ProviderError::ModelNotFound {
        model: model.to_owned(),
        hint,
    }
}

/// The error message inside a body, whatever its shape: the API's JSON,
/// other JSON, an HTML page, text.
fn message_of(dialect: &dyn Dialect, body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        if let Some(message) = dialect.error_message(&value) {
            return Some(message);
        }
        if let Some(detail) = value.get("detail").and_then(Value::as_str) {
            return Some(detail.to_owned());
        }
    }
    if text.starts_with('<') {
        return Some(format!(
            "an HTML page instead of an API answer: {}",
            preview(text)
        ));
    }
    Some(preview(text))
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and is
/// treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// The innermost cause, e.g. "connection refused".
pub fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    match text.split(" (os error").next() {
        Some(short) if !short.is_empty() => short.to_lowercase(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::openai::OpenAi;

    fn asked<'a>(known: &'a [String]) -> Asked<'a> {
        Asked {
            backend: "gpu",
            host: "http://h:8000/v1",
            model: Some("qwen"),
            api_key_env: Some("GPU_API_KEY"),
            known_models: known,
        }
    }

    #[test]
    fn each_status_says_what_to_do() {
        let known = vec!["llama".to_owned(), "mistral".to_owned()];
        let a = asked(&known);
        let body = br#"{"error":{"message":"Incorrect API key provided"}}"#;
        let f = status(&OpenAi, &a, StatusCode::UNAUTHORIZED, None, body);
        assert!(matches!(f.next, Next::GiveUp));
        assert!(f.error.to_string().contains("$GPU_API_KEY"), "{}", f.error);

        let body = br#"{"error":{"message":"The model `qwen` does not exist"}}"#;
        let f = status(&OpenAi, &a, StatusCode::NOT_FOUND, None, body);
        assert!(
            f.error.to_string().contains("it serves: llama, mistral"),
            "{}",
            f.error
        );

        let f = status(
            &OpenAi,
            &a,
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(2)),
            b"",
        );
        assert!(matches!(f.next, Next::RetryAfter(Some(d)) if d == Duration::from_secs(2)));

        let f = status(
            &OpenAi,
            &a,
            StatusCode::BAD_GATEWAY,
            None,
            b"<html><body>bad gateway</body></html>",
        );
        assert!(matches!(f.next, Next::OtherHost));
        assert!(f.error.to_string().contains("HTML page"), "{}", f.error);
    }
}
