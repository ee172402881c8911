//! `/api/pull` through ollama-rs, with the ends tied off.
//!
//! ollama-rs 0.3.6 reassembles the pull stream's NDJSON lines and turns an
//! `{"error": …}` line into an error, so its stream is used as is. Two gaps
//! are closed here: nothing may follow an error, and a stream that stops
//! before Ollama's `success` status is an unfinished download, not a
//! finished one.

use futures::StreamExt;
use ollama_rs::error::OllamaError;
use ollama_rs::Ollama;

use super::errors;
use crate::{ProviderError, PullProgress, PullStream};

/// The status Ollama sends last when a pull has completed.
const SUCCESS: &str = "success";

pub async fn pull(client: &Ollama, host: &str, model: &str) -> Result<PullStream, ProviderError> {
    let progress = client
        .pull_model_stream(model.to_owned(), false)
        .await
        .map_err(|e| errors::client(host, Some(model), e))?;
    let state = State {
        progress,
        host: host.to_owned(),
        model: model.to_owned(),
        succeeded: false,
        ended: false,
    };
    Ok(Box::pin(futures::stream::unfold(
        state,
        |mut s| async move { s.next().await.map(|item| (item, s)) },
    )))
}

struct State {
    progress: ollama_rs::models::pull::PullModelStatusStream,
    host: String,
    model: String,
    succeeded: bool,
    ended: bool,
}

impl State {
    async fn next(&mut self) -> Option<Result<PullProgress, ProviderError>> {
        if self.ended {
            return None;
        }
        match self.progress.next().await {
            Some(Ok(status)) => {
                self.succeeded = status.message == SUCCESS;
                Some(Ok(PullProgress {
                    model: self.succeeded.then(|| self.model.clone()),
                    status: status.message,
                    // Ollama leaves `completed` out while it is zero.
                    completed_bytes: status.completed.or(status.total.map(|_| 0)),
                    total_bytes: status.total,
                }))
            }
            Some(Err(e)) => {
                self.ended = true;
                Some(Err(self.failed(e)))
            }
            None => {
                self.ended = true;
                (!self.succeeded).then(|| {
                    Err(ProviderError::Other(format!(
                        "the pull of `{}` from Ollama at {} stopped before it finished; run it again to resume",
                        self.model, self.host
                    )))
                })
            }
        }
    }

    fn failed(&self, error: OllamaError) -> ProviderError {
        let message = match error {
            OllamaError::InternalError(e) => e.message,
            OllamaError::ReqwestError(e) => return errors::transport(&self.host, &e),
            other => other.to_string(),
        };
        ProviderError::Other(format!(
            "pulling `{}` failed: Ollama at {} says \"{message}\"; check the name (https://ollama.com/library) and the server's network access",
            self.model, self.host
        ))
    }
}
