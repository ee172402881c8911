//! `execute_request`: counting, `execute_input`, running the cell, the
//! reply.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use skillkernel_protocol::content::{
    ExecuteErrorReply, ExecuteInput, ExecuteReply, ExecuteRequest, ReplyStatus,
};
use skillkernel_protocol::Message;
use tracing::Instrument;

use crate::cell::{self, Cell, Line};
use crate::errors::KernelError;
use crate::exec_context::values::value_bundle;
use crate::exec_context::{ExecContext, Output};
use crate::metrics::{CellKind, CellOutcome};
use crate::session::{SessionState, Shared};
use crate::{command, magics};

/// The reply content and metadata, and whether the cell failed.
pub struct ExecuteOutcome {
    pub reply: Value,
    /// The reply's `metadata` (e.g. the model's token counts).
    pub metadata: Map<String, Value>,
    pub failed: bool,
}

/// Runs one `execute_request` end to end (except busy/idle and sending the
/// reply, which the shell loop does).
pub async fn execute(
    shared: &Arc<Shared>,
    request: &Message,
    req: ExecuteRequest,
) -> ExecuteOutcome {
    let store_history = req.store_history && !req.silent;
    let execution_count = if store_history {
        shared.begin_history(&req.code)
    } else {
        shared.execution_count()
    };
    if !req.silent {
        shared
            .iopub
            .publish(
                Some(request),
                "execute_input",
                ExecuteInput {
                    code: req.code.clone(),
                    execution_count,
                },
            )
            .await;
    }
    let cancel = shared.begin_cell();
    let mut ctx = ExecContext {
        shared,
        out: Output::new(&shared.iopub, request, req.silent, execution_count)
            .recording_up_to(shared.output_record_limit()),
        cancel,
        request,
        allow_stdin: req.allow_stdin,
    };
    let span = tracing::info_span!(
        "cell",
        // As i64: OTel has no unsigned attributes.
        execution_count = execution_count as i64,
        kind = tracing::field::Empty,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    let (kind, result) = run_cell(&mut ctx, &req.code).instrument(span.clone()).await;
    shared.end_cell();
    let outcome = match &result {
        Ok(()) => CellOutcome::Ok,
        Err(KernelError::Interrupted) => CellOutcome::Interrupted,
        Err(_) => CellOutcome::Error,
    };
    span.record("kind", kind.as_str());
    span.record("outcome", outcome.as_str());
    if let Err(e) = &result {
        if outcome == CellOutcome::Error {
            skillkernel_stdx::span::mark_failed(&span, e);
        }
    }
    drop(span);
    shared.metrics.cell(kind, outcome);
    ctx.out.flush_stream().await;
    match result {
        Ok(()) => {
            let user_expressions = evaluate_user_expressions(shared, &req.user_expressions);
            let (payload, metadata) =
                take_parts(ctx.out, shared, store_history, execution_count).await;
            ExecuteOutcome {
                reply: to_value(ExecuteReply {
                    status: ReplyStatus::Ok,
                    execution_count,
                    payload,
                    user_expressions,
                }),
                metadata,
                failed: false,
            }
        }
        Err(error) => {
            let content = error.to_content();
            ctx.out.error(&content).await;
            let (payload, metadata) =
                take_parts(ctx.out, shared, store_history, execution_count).await;
            ExecuteOutcome {
                metadata,
                reply: to_value(ExecuteErrorReply {
                    status: ReplyStatus::Error,
                    execution_count,
                    error: content,
                    payload,
                    user_expressions: Map::new(),
                }),
                failed: true,
            }
        }
    }
}

async fn take_parts(
    out: Output<'_>,
    shared: &Arc<Shared>,
    store_history: bool,
    count: u64,
) -> (Vec<Value>, Map<String, Value>) {
    let (payload, record, metadata) = out.into_parts();
    if store_history && !record.is_empty() {
        shared.record_output(count, record).await;
    }
    (payload, metadata)
}

fn to_value(content: impl serde::Serialize) -> Value {
    serde_json::to_value(content).unwrap_or_else(|_| json!({}))
}

/// Parses and runs a cell; says what kind of cell it was.
pub async fn run_cell(
    ctx: &mut ExecContext<'_>,
    code: &str,
) -> (CellKind, Result<(), KernelError>) {
    let cell = match cell::parse(code) {
        Ok(cell) => cell,
        Err(e) => return (CellKind::Invalid, Err(KernelError::Syntax(e.to_string()))),
    };
    match cell {
        Cell::Empty => (CellKind::Empty, Ok(())),
        Cell::Exit => {
            ctx.out.ask_exit(false);
            (CellKind::Exit, Ok(()))
        }
        Cell::Prompt(text) => (CellKind::Prompt, crate::prompt::run(ctx, &text).await),
        Cell::Lines(lines) => (CellKind::Lines, run_lines(ctx, lines).await),
        Cell::CellMagic(magic) => (CellKind::CellMagic, magics::run_cell(ctx, &magic).await),
    }
}

async fn run_lines(ctx: &mut ExecContext<'_>, lines: Vec<Line>) -> Result<(), KernelError> {
    for line in lines {
        if ctx.cancel.is_cancelled() {
            return Err(KernelError::Interrupted);
        }
        match line {
            Line::Magic { name, args } => magics::run_line(ctx, &name, &args).await?,
            Line::Command(script) => command::run(ctx, &script).await?,
        }
    }
    Ok(())
}

/// `user_expressions`: each expression names a session variable; the
/// reply maps it to a mime bundle or an error, and is always an object.
fn evaluate_user_expressions(shared: &Shared, exprs: &Map<String, Value>) -> Map<String, Value> {
    shared.with_state(|state| evaluate_in(state, exprs))
}

fn evaluate_in(state: &SessionState, exprs: &Map<String, Value>) -> Map<String, Value> {
    exprs
        .iter()
        .map(|(key, expr)| {
            let name = expr.as_str().unwrap_or_default().trim();
            let value = match state.variables.get(name) {
                Some(v) => json!({
                    "status": "ok",
                    "data": value_bundle(v),
                    "metadata": {},
                }),
                None => {
                    let err = KernelError::VariableNotFound(name.to_owned()).to_content();
                    json!({
                        "status": "error",
                        "ename": err.ename,
                        "evalue": err.evalue,
                        "traceback": err.traceback,
                    })
                }
            };
            (key.clone(), value)
        })
        .collect()
}
