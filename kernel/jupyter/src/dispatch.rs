//! Requests answered the same way on shell and control: everything but
//! `execute_request`.

use std::sync::Arc;

use serde_json::{json, Map};
use skillkernel_protocol::content::{
    CommClose, CommInfoReply, CommOpen, CompleteRequest, ErrorContent, ErrorReply, HistoryReply,
    HistoryRequest, InspectRequest, InterruptReply, IsCompleteRequest, ReplyStatus, ShutdownReply,
    ShutdownRequest,
};
use skillkernel_protocol::Message;
use skillkernel_transport::FrameSender;

use crate::session::Shared;
use crate::{complete, history, info, inspect, ExitReason, ShutdownOrigin};
use skillkernel_stdx::lock;

/// Answers `req` on `channel` (busy/idle are the caller's).
pub(crate) async fn respond(shared: &Arc<Shared>, channel: &Arc<dyn FrameSender>, req: &Message) {
    let msg_type = req.msg_type().to_owned();
    let result = match msg_type.as_str() {
        "kernel_info_request" => Ok(("kernel_info_reply", json!(info::kernel_info()))),
        "complete_request" => req.parse_content::<CompleteRequest>().map(|c| {
            (
                "complete_reply",
                json!(complete::complete(shared, &c.code, c.cursor_pos)),
            )
        }),
        "inspect_request" => req.parse_content::<InspectRequest>().map(|c| {
            (
                "inspect_reply",
                json!(inspect::inspect(shared, &c.code, c.cursor_pos)),
            )
        }),
        "is_complete_request" => req
            .parse_content::<IsCompleteRequest>()
            .map(|c| ("is_complete_reply", json!(complete::is_complete(&c.code)))),
        "history_request" => match req.parse_content::<HistoryRequest>() {
            Ok(h) => {
                let mut entries = shared.with_state(|s| s.history.select(&h));
                if h.output {
                    entries = shared.with_full_outputs(entries).await;
                }
                let history = history::rows(&entries, h.output);
                Ok((
                    "history_reply",
                    json!(HistoryReply {
                        status: ReplyStatus::Ok,
                        history
                    }),
                ))
            }
            Err(e) => Err(e),
        },
        "model_request" => Ok((
            "model_reply",
            crate::model_request::reply(shared, req).await,
        )),
        "skill_request" => Ok((
            "skill_reply",
            crate::skill_request::reply(shared, req).await,
        )),
        "sandbox_request" => Ok((
            "sandbox_reply",
            crate::sandbox_request::reply(shared, &req.content).await,
        )),
        "status_request" => Ok(("status_reply", crate::status::reply(shared))),
        "comm_info_request" => Ok((
            "comm_info_reply",
            json!(CommInfoReply {
                status: ReplyStatus::Ok,
                comms: Map::new(),
            }),
        )),
        "comm_open" => {
            // No comm targets are registered: close it, as the spec asks.
            if let Ok(open) = req.parse_content::<CommOpen>() {
                tracing::info!(target_name = %open.target_name, "comm_open for unknown target; closing");
                shared
                    .iopub
                    .publish(
                        Some(req),
                        "comm_close",
                        CommClose {
                            comm_id: open.comm_id,
                            data: Map::new(),
                        },
                    )
                    .await;
            }
            return;
        }
        "comm_msg" | "comm_close" => return,
        "interrupt_request" => {
            shared.interrupt();
            Ok((
                "interrupt_reply",
                json!(InterruptReply {
                    status: ReplyStatus::Ok
                }),
            ))
        }
        "shutdown_request" => {
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
                    .reply(channel.as_ref(), req, "shutdown_reply", reply)
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
        other => {
            if let Some(base) = other.strip_suffix("_request") {
                tracing::warn!(
                    msg_type = other,
                    "unsupported request; answering with an error"
                );
                let error = ErrorContent::new(
                    "UnsupportedRequest",
                    format!("skillkernel does not support `{other}`"),
                );
                shared
                    .reply(
                        channel.as_ref(),
                        req,
                        &format!("{base}_reply"),
                        ErrorReply::new(error),
                    )
                    .await;
            } else {
                tracing::warn!(msg_type = other, "ignoring message of unknown type");
            }
            return;
        }
    };
    match result {
        Ok((reply_type, content)) => {
            shared
                .reply(channel.as_ref(), req, reply_type, content)
                .await
        }
        Err(e) => {
            tracing::warn!(error = %e, "invalid request content");
            let reply_type = msg_type.replace("_request", "_reply");
            let error = ErrorContent::new("InvalidRequest", e.to_string());
            shared
                .reply(channel.as_ref(), req, &reply_type, ErrorReply::new(error))
                .await;
        }
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
