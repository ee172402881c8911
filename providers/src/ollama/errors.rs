//! Ollama failures as [`ProviderError`]s that say what to do next.

use reqwest::StatusCode;

use super::{ndjson, BACKEND};
use crate::http::errors::root_cause;
use crate::ProviderError;

/// A request that never got an HTTP answer.
pub fn transport(host: &str, err: &reqwest::Error) -> ProviderError {
    if err.is_connect() || (err.is_timeout() && !err.is_body()) {
        let cause = if err.is_timeout() {
            format!("no answer within {} s", super::CONNECT_TIMEOUT.as_secs())
        } else {
            root_cause(err)
        };
        return ProviderError::Unavailable {
            backend: BACKEND.into(),
            reason: format!(
                "no Ollama server at {host}: {cause}; start it with `ollama serve` or set OLLAMA_HOST"
            ),
        };
    }
    ProviderError::Unavailable {
        backend: BACKEND.into(),
        reason: format!(
            "the connection to Ollama at {host} failed: {}; check that `ollama serve` is still running",
            root_cause(err)
        ),
    }
}

/// An ollama-rs call that failed.
pub fn client(
    host: &str,
    model: Option<&str>,
    err: ollama_rs::error::OllamaError,
) -> ProviderError {
    use ollama_rs::error::OllamaError;
    match err {
        OllamaError::ReqwestError(e) => transport(host, &e),
        // ollama-rs hands back the body of a non-2xx answer as text.
        OllamaError::Other(body) => refused(host, model, None, body.as_bytes()),
        OllamaError::InternalError(e) => refused(host, model, None, e.message.as_bytes()),
        other => ProviderError::Other(format!("Ollama at {host}: {other}")),
    }
}

/// An HTTP answer that is not a success: Ollama's `{"error": "…"}` body,
/// turned into [`ProviderError::ModelNotFound`] when it is about a missing
/// model.
pub fn refused(
    host: &str,
    model: Option<&str>,
    status: Option<StatusCode>,
    body: &[u8],
) -> ProviderError {
    let message = ndjson::error_message(body)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let message = match (message.is_empty(), status) {
        (true, Some(s)) => format!("HTTP {s}"),
        _ => message,
    };
    let missing = status == Some(StatusCode::NOT_FOUND) || message.contains("not found");
    match model {
        Some(model) if missing => not_found(host, model, &message),
        _ => ProviderError::Other(format!("Ollama at {host}: {message}")),
    }
}

pub fn not_found(host: &str, model: &str, message: &str) -> ProviderError {
    ProviderError::ModelNotFound {
        model: model.to_owned(),
        hint: format!(
            "Ollama at {host} says \"{message}\"; pull it first (`ollama pull {model}`), \
             or list what is there with `ollama list`"
        ),
    }
}
