//! `model_request` / `model_reply`: the structured form of `%model`, for
//! clients that want data rather than tables.
//!
//! The request and reply are [`ModelRequest`] and [`ModelReply`] (see
//! `docs/protocol.md`). `pull` publishes its progress on IOPub as a
//! display updated in place.

use std::sync::Arc;

use serde_json::Value;
use skillkernel_protocol::content::{
    BackendStatus, BudgetStatus, CacheStatus, ExtensionRequest, ModelEntry, ModelPrice, ModelReply,
    ModelRequest, ReplyTo, RequestError, UnavailableBackend, UsageRow, UsageSummary, UsageTotals,
};
use skillkernel_protocol::Message;
use skillkernel_providers::usage::report::Row;
use skillkernel_providers::usage::{Totals, UsageReport};
use skillkernel_providers::{ModelInfo, ModelsConfig, ProviderStatus};

use crate::errors::KernelError;
use crate::exec_context::output::Output;
use crate::magics::usage;
use crate::pull::pull_with_progress;
use crate::session::Shared;

/// A model object as the reply carries it, with its price from `config`.
fn entry(m: ModelInfo, config: &ModelsConfig) -> ModelEntry {
    let price = config.price(&m.name, &m.backend).map(|p| ModelPrice {
        input: p.input,
        output: p.output,
    });
    ModelEntry {
        price,
        name: m.name,
        backend: m.backend,
        size_bytes: m.size_bytes,
        family: m.family,
        quantization: m.quantization,
        context_length: m.context_length,
    }
}

fn totals(t: &Totals) -> UsageTotals {
    UsageTotals {
        calls: t.calls,
        prompt_tokens: t.prompt_tokens,
        completion_tokens: t.completion_tokens,
        cost: t.cost,
        unpriced_calls: t.unpriced_calls,
        cached_calls: t.cached_calls,
        mean_first_token_ms: t.mean_first_token_ms,
        total_ms: t.total_ms,
    }
}

/// The usage report as the reply carries it.
fn usage_summary(r: &UsageReport) -> UsageSummary {
    let rows = |rows: &[Row]| {
        rows.iter()
            .map(|row| UsageRow {
                key: row.key.clone(),
                totals: totals(&row.totals),
            })
            .collect()
    };
    UsageSummary {
        today: r.today.to_string(),
        days: r.days,
        today_totals: totals(&r.today_totals),
        period_totals: totals(&r.period_totals),
        by_model: rows(&r.by_model),
        by_skill: rows(&r.by_skill),
        budgets: r
            .budgets
            .iter()
            .map(|b| BudgetStatus {
                name: b.name.clone(),
                limit: b.limit,
                spent: b.spent,
            })
            .collect(),
        unreadable_lines: r.unreadable_lines,
    }
}

fn backend_status(s: ProviderStatus) -> BackendStatus {
    BackendStatus {
        backend: s.backend,
        available: s.available,
        version: s.version,
        detail: s.detail,
    }
}

/// Why the content is not a `model_request`, as a usage error.
fn usage_error(e: RequestError) -> KernelError {
    let magic = ModelRequest::TYPE.request();
    match e {
        RequestError::Invalid(message) => {
            KernelError::usage(magic, message, "{\"action\": \"list\"}")
        }
        RequestError::UnknownAction { action, known } => KernelError::usage(
            magic,
            format!("unknown action `{action}`"),
            &format!("actions: {}", known.join(", ")),
        ),
        RequestError::MissingField { action, field } => KernelError::usage(
            magic,
            format!("action `{action}` needs a `{field}`"),
            "{\"action\": \"use\", \"model\": NAME}",
        ),
    }
}

async fn answer(
    shared: &Arc<Shared>,
    req: &Message,
    request: ModelRequest,
) -> Result<ModelReply, KernelError> {
    let models = shared.models().ok_or(KernelError::NoModel)?;
    let current = shared.current_model().unwrap_or_default();
    let registry = &models.registry;
    let config = registry.config();
    Ok(match request {
        ModelRequest::List => {
            let listing = registry.list().await;
            let unavailable = listing
                .unavailable
                .iter()
                .map(|(backend, e)| UnavailableBackend {
                    backend: backend.clone(),
                    error: e.to_string(),
                })
                .collect();
            ModelReply::List {
                models: listing
                    .models
                    .into_iter()
                    .map(|m| entry(m, config))
                    .collect(),
                unavailable,
                current,
            }
        }
        ModelRequest::Info { model } => {
            let spec = model.unwrap_or(current);
            ModelReply::Info {
                model: entry(registry.info(&spec).await?, config),
            }
        }
        ModelRequest::Status => {
            let route = registry.route(&current).await.ok().map(|r| r.spec());
            let cache = registry.cache().map(|c| CacheStatus { entries: c.len() });
            ModelReply::Status {
                providers: registry
                    .statuses()
                    .await
                    .into_iter()
                    .map(backend_status)
                    .collect(),
                current,
                current_resolved: route,
                cache,
            }
        }
        ModelRequest::Use { model } => {
            let (info, kept) = shared.use_model(&model).await?;
            ModelReply::Use {
                model: entry(info, config),
                current: kept,
            }
        }
        ModelRequest::Remove { model } => ModelReply::Remove {
            removed: registry.remove(&model).await?,
        },
        ModelRequest::Pull { model: spec } => {
            // Progress goes to IOPub with this request as parent; an
            // interrupt_request stops the pull as it stops a cell.
            let cancel = shared.begin_cell();
            let mut out = Output::new(&shared.iopub, req, false, 0);
            let display_id = format!("pull-{}", req.header.msg_id);
            let result = pull_with_progress(&models, &mut out, &spec, &display_id, &cancel).await;
            shared.end_cell();
            let summary = result?;
            let installed = summary
                .installed
                .as_ref()
                .map(|name| format!("{name}@{}", summary.backend));
            let info = registry
                .info(installed.as_deref().unwrap_or(&spec))
                .await
                .ok();
            ModelReply::Pull {
                pull: summary,
                model: info.map(|m| entry(m, config)),
            }
        }
        ModelRequest::Usage { days } => {
            let days = days
                .unwrap_or(usage::DEFAULT_DAYS)
                .clamp(1, usage::MAX_DAYS);
            ModelReply::Usage {
                usage: usage_summary(&usage::report(&models, days).await?),
            }
        }
    })
}

/// The `model_reply` content for a `model_request`.
pub(crate) async fn reply(shared: &Arc<Shared>, req: &Message) -> Value {
    let result = match ModelRequest::parse(&req.content) {
        Ok(request) => answer(shared, req, request).await,
        Err(e) => Err(usage_error(e)),
    };
    let reply: ReplyTo<ModelRequest> = result.map_err(|e| e.to_content()).into();
    crate::errors::reply_json(reply)
}
