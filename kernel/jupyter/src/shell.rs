//! The shell channel: requests handled strictly in arrival order.
//!
//! A reader task verifies each message and queues it; an executor task
//! takes them one at a time and wraps each in `status: busy` … `idle`,
//! publishing all of a request's output before its reply. When a cell
//! fails with `stop_on_error`, execute requests already queued are
//! answered `aborted` instead of run.
//!
//! Requests routed [`Route::Beside`] (`mcp_request`) skip the queue: the
//! reader gives each a task of its own, so that an MCP client's long tool
//! call and the notebook's cells run side by side.

use std::sync::Arc;
use std::time::Duration;

use skillkernel_protocol::content::{AbortedReply, ErrorContent, ExecuteRequest, ExecutionState};
use skillkernel_protocol::{Message, RequestType};
use skillkernel_transport::{Channel, FrameReceiver, FrameSender};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::dispatch::{self, Route};
use crate::execute;
use crate::inbound;
use crate::memory::Trimmer;
use crate::metrics::{CellKind, CellOutcome};
use crate::request_span::request_span;
use crate::session::Shared;

/// After a failed cell, requests that keep arriving with no pause longer
/// than this were sent before the client saw the failure: they are
/// collected to be aborted.
const ABORT_SETTLE: Duration = Duration::from_millis(5);
/// Requests collected that way at most; later ones are handled as usual.
const ABORT_AT_MOST: usize = 10_000;

pub(crate) fn serve(shared: Arc<Shared>, channel: Channel) -> Vec<JoinHandle<()>> {
    let (queue_tx, queue_rx) = mpsc::channel(inbound::DECODED_AHEAD);
    let reader = tokio::spawn(read_requests(
        shared.clone(),
        channel.receiver,
        Arc::clone(&channel.sender),
        queue_tx,
    ));
    let executor = tokio::spawn(execute_in_order(shared, channel.sender, queue_rx));
    vec![reader, executor]
}

/// Requests answered beside the queue at once, at most.
const BESIDE_AT_ONCE: usize = 256;

/// Queues requests for the executor, except those answered beside it
/// ([`Route::Beside`]), which each get a task of their own (at most
/// [`BESIDE_AT_ONCE`] at a time; more wait here).
async fn read_requests(
    shared: Arc<Shared>,
    mut receiver: Box<dyn FrameReceiver>,
    sender: Arc<dyn FrameSender>,
    queue: mpsc::Sender<Message>,
) {
    let beside = Arc::new(tokio::sync::Semaphore::new(BESIDE_AT_ONCE));
    while let Some(msg) = inbound::next_message(&shared, receiver.as_mut(), "shell").await {
        let request = RequestType::parse(msg.msg_type());
        if request.is_some_and(|r| dispatch::route(r) == Route::Beside) {
            let Ok(permit) = Arc::clone(&beside).acquire_owned().await else {
                break;
            };
            let (shared, sender) = (shared.clone(), Arc::clone(&sender));
            let span = request_span(&msg, "shell");
            tokio::spawn(
                async move {
                    let _permit = permit;
                    answer_beside(&shared, &sender, &msg).await;
                }
                .instrument(span),
            );
            continue;
        }
        if queue.send(msg).await.is_err() {
            break;
        }
    }
}

/// Answers a request beside the queue: busy, the reply, idle.
async fn answer_beside(shared: &Arc<Shared>, sender: &Arc<dyn FrameSender>, msg: &Message) {
    let taken = std::time::Instant::now();
    shared.iopub.status(msg, ExecutionState::Busy).await;
    dispatch::respond(shared, sender, msg).await;
    shared.iopub.flush().await;
    shared
        .metrics
        .request(msg.msg_type(), taken.elapsed(), false);
    shared.iopub.status(msg, ExecutionState::Idle).await;
}

async fn execute_in_order(
    shared: Arc<Shared>,
    sender: Arc<dyn FrameSender>,
    mut queue: mpsc::Receiver<Message>,
) {
    let mut trimmer = Trimmer::default();
    while let Some(msg) = queue.recv().await {
        let queued_before_failure = handle(&shared, &sender, &msg, &mut queue)
            .instrument(request_span(&msg, "shell"))
            .await;
        for queued in queued_before_failure {
            let span = request_span(&queued, "shell");
            if queued.msg_type() == RequestType::Execute.request() {
                abort_request(&shared, sender.as_ref(), &queued)
                    .instrument(span)
                    .await;
            } else {
                handle(&shared, &sender, &queued, &mut queue)
                    .instrument(span)
                    .await;
            }
        }
        trimmer.handled(queue.is_empty());
    }
}

/// Handles one shell request. When a cell fails with `stop_on_error`,
/// returns the requests that were queued behind it: they were sent before
/// the client could know of the failure, so their executes are aborted.
async fn handle(
    shared: &Arc<Shared>,
    channel: &Arc<dyn FrameSender>,
    msg: &Message,
    queue: &mut mpsc::Receiver<Message>,
) -> Vec<Message> {
    let sender = channel.as_ref();
    let taken = std::time::Instant::now();
    shared.iopub.status(msg, ExecutionState::Busy).await;
    let mut queued_before_failure = Vec::new();
    let request = RequestType::parse(msg.msg_type());
    let work = request.filter(|r| dispatch::route(*r) == Route::ShellWork);
    // Held until the reply is sent, so a shutdown waits for the answer too.
    let _operation = work.map(|r| shared.operations.begin(r.request(), &msg.header.msg_id));
    if let Some(work) = work.filter(|_| shared.exit_requested()) {
        dispatch::refuse(shared, sender, msg, work, dispatch::shutting_down()).await;
    } else if request == Some(RequestType::Execute) {
        match msg.parse_content::<ExecuteRequest>() {
            Ok(req) => {
                let stop_on_error = req.stop_on_error;
                let outcome = execute::execute(shared, msg, req).await;
                if outcome.failed && stop_on_error {
                    // Collect before replying: the client cannot have
                    // reacted to a reply it has not seen. The queue is
                    // short, so they are taken as they come through.
                    while queued_before_failure.len() < ABORT_AT_MOST {
                        match tokio::time::timeout(ABORT_SETTLE, queue.recv()).await {
                            Ok(Some(queued)) => queued_before_failure.push(queued),
                            _ => break,
                        }
                    }
                }
                shared.iopub.flush().await;
                shared
                    .reply_with_metadata(
                        sender,
                        msg,
                        RequestType::Execute.reply(),
                        outcome.reply,
                        outcome.metadata,
                    )
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "invalid execute_request");
                let error = ErrorContent::new("InvalidRequest", e.to_string());
                dispatch::error_reply(shared, sender, msg, RequestType::Execute, error).await;
            }
        }
    } else {
        dispatch::respond(shared, channel, msg).await;
        shared.iopub.flush().await;
    }
    shared
        .metrics
        .request(msg.msg_type(), taken.elapsed(), work.is_none());
    shared.iopub.status(msg, ExecutionState::Idle).await;
    queued_before_failure
}

async fn abort_request(shared: &Arc<Shared>, sender: &dyn FrameSender, msg: &Message) {
    tracing::info!(msg_id = %msg.header.msg_id, "aborting queued execute_request after an error");
    shared.iopub.status(msg, ExecutionState::Busy).await;
    shared
        .reply(
            sender,
            msg,
            RequestType::Execute.reply(),
            AbortedReply::default(),
        )
        .await;
    shared.metrics.cell(CellKind::NotRun, CellOutcome::Aborted);
    shared.iopub.status(msg, ExecutionState::Idle).await;
}
