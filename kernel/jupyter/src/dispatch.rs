//! Requests answered the same way on shell and on control (for those
//! control takes, see [`route`] and [`crate::control`]): everything but
//! `execute_request`, which the shell executor runs.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use skillkernel_protocol::content::{
    CommClose, CommInfoReply, CommOpen, CompleteRequest, ErrorContent, ErrorReply,
    ExtensionRequest, HistoryReply, HistoryRequest, InspectRequest, InterruptReply,
    IsCompleteRequest, ReplyStatus, ShutdownReply, ShutdownRequest, StatusRequest,
};
use skillkernel_protocol::{comm, reply_type, Message, RequestType};
use skillkernel_transport::FrameSender;

use crate::session::Shared;
use crate::{complete, history, info, inspect, ExitReason, ShutdownOrigin};
use skillkernel_stdx::lock;

/// Answers `req` on `channel` (busy/idle are the caller's).
pub(crate) async fn respond(shared: &Arc<Shared>, channel: &Arc<dyn FrameSender>, req: &Message) {
    let Some(request) = RequestType::parse(req.msg_type()) else {
        return not_a_known_request(shared, channel, req).await;
    };
    let result: Result<Value, String> = match request {
        RequestType::KernelInfo => Ok(json!(info::kernel_info())),
        RequestType::Complete => req
            .parse_content::<CompleteRequest>()
            .map(|c| json!(complete::complete(shared, &c.code, c.cursor_pos)))
            .map_err(|e| e.to_string()),
        RequestType::Inspect => req
            .parse_content::<InspectRequest>()
            .map(|c| json!(inspect::inspect(shared, &c.code, c.cursor_pos)))
            .map_err(|e| e.to_string()),
        RequestType::IsComplete => req
            .parse_content::<IsCompleteRequest>()
            .map(|c| json!(complete::is_complete(&c.code)))
            .map_err(|e| e.to_string()),
        RequestType::History => match req.parse_content::<HistoryRequest>() {
            Ok(h) => {
                let mut entries = shared.history(&h).await;
                if h.output {
                    entries = shared.with_full_outputs(entries).await;
                }
                let history = history::rows(&entries, h.output);
                Ok(json!(HistoryReply {
                    status: ReplyStatus::Ok,
                    history
                }))
            }
            Err(e) => Err(e.to_string()),
        },
        RequestType::Model => Ok(crate::model_request::reply(shared, req).await),
        RequestType::Skill => Ok(crate::skill_request::reply(shared, req).await),
        RequestType::Sandbox => Ok(crate::sandbox_request::reply(shared, &req.content).await),
        RequestType::Mcp => Ok(crate::mcp_request::reply(shared, req).await),
        RequestType::Status => StatusRequest::parse(&req.content)
            .map(|r| crate::status::reply(shared, r))
            .map_err(|e| e.to_string()),
        RequestType::CommInfo => Ok(json!(CommInfoReply {
            status: ReplyStatus::Ok,
            comms: Map::new(),
        })),
        RequestType::Interrupt => {
            shared.interrupt();
            Ok(json!(InterruptReply {
                status: ReplyStatus::Ok
            }))
        }
        RequestType::Shutdown => {
            let restart = req
                .parse_content::<ShutdownRequest>()
                .map(|s| s.restart)
                .unwrap_or(false);
            if shared.exit_requested() {
                // One shutdown at a time; this requester is told it is on.
                let reply = ShutdownReply {
                    status: ReplyStatus::Ok,
                    restart,
                };
                shared
                    .reply(channel.as_ref(), req, request.reply(), reply)
                    .await;
                return;
            }
            if restart {
                mark_fresh_start(shared).await;
            }
            tracing::info!(restart, "shutdown requested");
            // Answered in the shutdown's NotifyingClients phase.
            *lock(&shared.shutdown_requester) = Some((req.clone(), channel.clone()));
            shared.request_exit(ExitReason {
                restart,
                origin: ShutdownOrigin::Client,
            });
            return;
        }
        RequestType::Execute => {
            // Shell runs cells itself; control refuses them before here.
            let error = wrong_channel(request);
            return error_reply(shared, channel.as_ref(), req, request, error).await;
        }
    };
    match result {
        Ok(content) => {
            shared
                .reply(channel.as_ref(), req, request.reply(), content)
                .await
        }
        Err(e) => {
            tracing::warn!(error = %e, "invalid request content");
            let error = ErrorContent::new("InvalidRequest", e);
            error_reply(shared, channel.as_ref(), req, request, error).await;
        }
    }
}

/// Answers `req`, a `request`, with `error`; an `execute_reply` also
/// carries the execution count, as the spec requires.
pub(crate) async fn error_reply(
    shared: &Shared,
    channel: &dyn FrameSender,
    req: &Message,
    request: RequestType,
    error: ErrorContent,
) {
    let mut reply = json!(ErrorReply::new(error));
    if request == RequestType::Execute {
        reply["execution_count"] = json!(shared.execution_count());
    }
    shared.reply(channel, req, request.reply(), reply).await;
}

/// Comm messages, and requests this kernel does not know: the unknown
/// `*_request` is answered with an error, anything else only logged.
async fn not_a_known_request(shared: &Arc<Shared>, channel: &Arc<dyn FrameSender>, req: &Message) {
    let msg_type = req.msg_type();
    match msg_type {
        comm::OPEN => {
            // No comm targets are registered: close it, as the spec asks.
            if let Ok(open) = req.parse_content::<CommOpen>() {
                tracing::info!(target_name = %open.target_name, "comm_open for unknown target; closing");
                shared
                    .iopub
                    .publish(
                        Some(req),
                        comm::CLOSE,
                        CommClose {
                            comm_id: open.comm_id,
                            data: Map::new(),
                        },
                    )
                    .await;
            }
        }
        comm::MSG | comm::CLOSE => {}
        other => match reply_type(other) {
            Some(reply) => {
                tracing::warn!(
                    msg_type = other,
                    "unsupported request; answering with an error"
                );
                let error = ErrorContent::new(
                    "UnsupportedRequest",
                    format!("skillkernel does not support `{other}`"),
                );
                shared
                    .reply(channel.as_ref(), req, &reply, ErrorReply::new(error))
                    .await;
            }
            None => tracing::warn!(msg_type = other, "ignoring message of unknown type"),
        },
    }
}

/// A client's restart (JupyterLab's "Restart kernel", jupyter_client's
/// `restart_kernel`) expects a fresh kernel, so the session's next start
/// begins fresh. Done before the reply, so the mark is on disk before the
/// client starts the next kernel.
async fn mark_fresh_start(shared: &Arc<Shared>) {
    let shared = shared.clone();
    match tokio::task::spawn_blocking(move || shared.mark_fresh_start()).await {
        Ok(Ok(())) => tracing::info!("restart requested: the next start of this session is fresh"),
        Ok(Err(e)) => tracing::warn!("restart requested, but the next start may not be fresh: {e}"),
        Err(e) => tracing::warn!(error = %e, "marking the session for a fresh start failed"),
    }
}

/// Where a known request is served, and whether it is work.
///
/// One exhaustive `match` (no `_` arm), so a new [`RequestType`] does not
/// compile until someone decides where it belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Answered on control (and on shell too).
    Control,
    /// Starts work: shell only, holds an operation guard while it runs,
    /// refused once a shutdown has begun.
    ShellWork,
    /// Answered on shell only, at once.
    Shell,
    /// Answered on shell beside the queue, each in its own task as soon
    /// as it is done: MCP sessions, whose tool calls must neither wait
    /// for cells nor hold them up. Each one's work holds its own
    /// operation guards and is refused once a shutdown has begun.
    Beside,
}

pub(crate) fn route(request: RequestType) -> Route {
    use RequestType::*;
    match request {
        KernelInfo | Interrupt | Shutdown | Status => Route::Control,
        // `sandbox_request` ends session processes and may start the
        // helper's probe: work a shutdown must wait for or refuse.
        Execute | Model | Skill | Sandbox => Route::ShellWork,
        Complete | Inspect | IsComplete | History | CommInfo => Route::Shell,
        Mcp => Route::Beside,
    }
}

/// The error for `request` arriving on control.
pub(crate) fn wrong_channel(request: RequestType) -> ErrorContent {
    let answered: Vec<&str> = RequestType::ALL
        .iter()
        .filter(|t| route(**t) == Route::Control)
        .map(|t| t.request())
        .collect();
    ErrorContent::new(
        "WrongChannel",
        format!(
            "`{request}` is not answered on the control channel; send it on shell \
             (control answers {})",
            answered.join(", ")
        ),
    )
}

/// The error for work that arrives once a shutdown has begun.
pub(crate) fn shutting_down() -> ErrorContent {
    ErrorContent::new(
        "KernelShuttingDown",
        "the kernel is shutting down and takes no new work; start it again to continue",
    )
}

/// Answers `msg`, a `request` this channel will not serve, with `error`.
pub(crate) async fn refuse(
    shared: &Shared,
    sender: &dyn FrameSender,
    msg: &Message,
    request: RequestType,
    error: ErrorContent,
) {
    tracing::info!(msg_type = %request, ename = %error.ename, "refusing a request");
    error_reply(shared, sender, msg, request, error).await;
}
