//! One generation on a remote backend: hosts tried until one answers its
//! first byte — another host after a refused connection, a 5xx or a
//! timeout; `Retry-After` waited out inside the first-byte budget — then
//! the rest of the answer streamed by [`super::reader`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::errors::{self, Failure, Next};
use super::pool::{Health, Lease, NoHost};
use super::reader::{self, Reader, Step};
use super::{RemoteProvider, RATE_LIMIT_ROUNDS};
use crate::{CompletionRequest, ProviderError, TokenStream};

impl RemoteProvider {
    /// Streams the answer to `request` from the first host that answers.
    pub(super) async fn generate(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError> {
        if cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        let headers = self.headers()?;
        let mut body = self.dialect.chat_body(&request);
        let mut fallback = self.dialect.schema_fallback(&body);
        let mut fell_back = false;
        if self.schema_fallback.load(Ordering::Relaxed) {
            if let Some(older) = fallback.take() {
                body = older;
            }
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs_f64(self.config.first_byte_timeout_secs);
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<ProviderError> = None;
        let mut rate_limited: Option<Option<Duration>> = None;
        let mut rounds = 0;
        loop {
            let lease = match self.pool.lease(&request.model, &tried).await {
                Ok(lease) => lease,
                Err(why) => {
                    // Every host said "later": wait as asked, if the budget allows.
                    if let Some(wait) = rate_limited.take() {
                        let wait = wait.unwrap_or(Duration::from_secs(1));
                        if rounds < RATE_LIMIT_ROUNDS
                            && tokio::time::Instant::now() + wait < deadline
                        {
                            rounds += 1;
                            tokio::select! {
                                biased;
                                _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
                                _ = tokio::time::sleep(wait) => {}
                            }
                            tried.clear();
                            continue;
                        }
                    }
                    return Err(last.unwrap_or_else(|| ProviderError::Unavailable {
                        backend: self.name.clone(),
                        reason: match why {
                            NoHost::AllDown => format!(
                                "every host is out after failing: {}",
                                self.pool
                                    .hosts()
                                    .iter()
                                    .map(|h| format!(
                                        "{} ({})",
                                        h.url,
                                        h.last_error().unwrap_or_default()
                                    ))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            NoHost::AllTried => "no host could answer".into(),
                        },
                    }));
                }
            };
            let index = lease.index();
            if lease.host().health() == Health::Probing {
                // Back from its cool-down: it must answer /models first.
                if let Err(f) = self.fetch_models(index).await {
                    tried.push(index);
                    last = Some(f.error);
                    continue;
                }
            }
            let call = Call {
                headers: &headers,
                body: &body,
                request: &request,
                cancel: &cancel,
                started,
                deadline,
            };
            match self.attempt(lease, &call).await {
                Ok((first, reader)) => {
                    if fell_back {
                        self.schema_fallback.store(true, Ordering::Relaxed);
                    }
                    let describe = format!("{} ({})", self.name, self.pool.hosts()[index].url);
                    return Ok(reader::token_stream(first, reader, describe));
                }
                Err(Attempt::Cancelled) => return Err(ProviderError::Cancelled),
                Err(Attempt::SchemaRefused(failure)) if fallback.is_some() => {
                    // The same host again, asked the way it understands;
                    // remembered once that way worked.
                    tracing::info!(backend = %self.name, error = %failure.error, "the server refused `json_schema`; asking with `json_object` and a schema");
                    body = fallback.take().unwrap_or(body);
                    fell_back = true;
                }
                Err(Attempt::Failed(failure) | Attempt::SchemaRefused(failure)) => {
                    tracing::warn!(backend = %self.name, host = %self.pool.hosts()[index].url, error = %failure.error, "attempt failed");
                    tried.push(index);
                    match failure.next {
                        Next::OtherHost => {
                            self.pool.hosts()[index].failed(&failure.error.to_string());
                            last = Some(failure.error);
                        }
                        Next::RetryAfter(wait) => {
                            rate_limited = Some(match rate_limited {
                                Some(Some(before)) => Some(wait.map_or(before, |w| w.min(before))),
                                _ => wait,
                            });
                            last = Some(failure.error);
                        }
                        Next::GiveUp => return Err(failure.error),
                    }
                }
            }
        }
    }

    /// One try on one host, up to the first token (or the end of an empty
    /// answer).
    async fn attempt(&self, lease: Lease, call: &Call<'_>) -> Result<(Vec<Step>, Reader), Attempt> {
        let Call {
            headers,
            body,
            request,
            cancel,
            started,
            deadline,
        } = *call;
        let url = format!("{}/{}", lease.host().url, self.dialect.chat_path());
        let send = self
            .http
            .post(&url)
            .headers(headers.clone())
            .json(body)
            .send();
        let response = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Attempt::Cancelled),
            sent = tokio::time::timeout_at(deadline, send) => match sent {
                Err(_) => return Err(Attempt::Failed(self.slow(&lease.host().url))),
                Ok(Err(e)) => return Err(Attempt::Failed(errors::transport(&self.name, &lease.host().url, &e))),
                Ok(Ok(response)) => response,
            },
        };
        let status = response.status();
        if !status.is_success() {
            let retry = errors::retry_after(response.headers());
            let body = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Attempt::Cancelled),
                body = tokio::time::timeout_at(deadline, response.bytes()) => match body {
                    Ok(Ok(body)) => body,
                    _ => Default::default(),
                },
            };
            let known = self.known_models();
            let mut asked = self.asked(&lease.host().url, Some(&request.model));
            asked.known_models = &known;
            let failure = errors::status(self.dialect.as_ref(), &asked, status, retry, &body);
            // llama-cpp-python answers a 500 naming the field; others a 400 or 422.
            return Err(
                if String::from_utf8_lossy(&body).contains("response_format") {
                    Attempt::SchemaRefused(failure)
                } else {
                    Attempt::Failed(failure)
                },
            );
        }
        let host_url = lease.host().url.clone();
        let estimate = crate::usage::record::prompt_estimate(request);
        let mut reader = Reader::new(
            Box::pin(response.bytes_stream()),
            Arc::clone(&self.dialect),
            cancel.clone(),
            lease,
            started,
            estimate,
        );
        let first = match tokio::time::timeout_at(deadline, reader.next()).await {
            Err(_) => return Err(Attempt::Failed(self.slow(&host_url))),
            Ok(None) => {
                return Err(Attempt::Failed(Failure {
                    error: ProviderError::Unavailable {
                        backend: self.name.clone(),
                        reason: format!("{host_url} ended the answer before it began"),
                    },
                    next: Next::OtherHost,
                }))
            }
            Ok(Some(Step::Failed(message))) => {
                return Err(Attempt::Failed(Failure {
                    error: ProviderError::Unavailable {
                        backend: self.name.clone(),
                        reason: format!("{host_url} failed before answering: {message}"),
                    },
                    next: Next::OtherHost,
                }))
            }
            Ok(Some(step)) => step,
        };
        Ok((vec![first], reader))
    }

    fn slow(&self, host: &str) -> Failure {
        Failure {
            error: ProviderError::Unavailable {
                backend: self.name.clone(),
                reason: format!(
                    "{host} sent no answer within {} s (first_byte_timeout_secs)",
                    self.config.first_byte_timeout_secs
                ),
            },
            next: Next::OtherHost,
        }
    }
}

enum Attempt {
    Cancelled,
    Failed(Failure),
    /// An error answer about `response_format`: the server wants the
    /// schema asked for another way.
    SchemaRefused(Failure),
}

/// What every attempt of one generation shares.
#[derive(Clone, Copy)]
struct Call<'a> {
    headers: &'a HeaderMap,
    body: &'a Value,
    request: &'a CompletionRequest,
    cancel: &'a CancellationToken,
    started: Instant,
    /// The first byte must come before this, over all attempts.
    deadline: tokio::time::Instant,
}
