//! The control channel, served beside shell so that `interrupt_request`,
//! `shutdown_request`, `kernel_info_request` and `status_request` are
//! answered while a cell runs.
//!
//! Control answers those four and nothing else that this kernel knows:
//! every other known request (`execute_request`, `model_request`,
//! `skill_request`, `sandbox_request`, `complete_request` …) is refused
//! with a `WrongChannel` error that says to send it on shell. Work started
//! on control would run outside shell's order, its operation guards and
//! its shutdown refusal, and would hold up the interrupts and shutdowns
//! control exists to deliver. Unknown `*_request`s get the same
//! `UnsupportedRequest` error as on shell.

use std::sync::Arc;

use skillkernel_protocol::content::ExecutionState;
use skillkernel_protocol::{Message, RequestType};
use skillkernel_transport::{Channel, FrameSender};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::dispatch::{self, Route};
use crate::inbound;
use crate::request_span::request_span;
use crate::session::Shared;

pub(crate) async fn serve(shared: Arc<Shared>, channel: Channel) {
    let (queue_tx, mut queue_rx) = mpsc::channel(inbound::DECODED_AHEAD);
    let reader = tokio::spawn(inbound::queue_requests(
        shared.clone(),
        channel.receiver,
        "control",
        queue_tx,
    ));
    while let Some(msg) = queue_rx.recv().await {
        let span = request_span(&msg, "control");
        answer(&shared, &channel.sender, &msg)
            .instrument(span)
            .await;
        // Keeps serving during a shutdown (kernel_info, interrupt, a second
        // shutdown_request); the coordinator stops this task at the end.
    }
    reader.abort();
}

async fn answer(shared: &Arc<Shared>, sender: &Arc<dyn FrameSender>, msg: &Message) {
    let taken = std::time::Instant::now();
    shared.iopub.status(msg, ExecutionState::Busy).await;
    match RequestType::parse(msg.msg_type()) {
        Some(request) if dispatch::route(request) != Route::Control => {
            let error = dispatch::wrong_channel(request);
            dispatch::refuse(shared, sender.as_ref(), msg, request, error).await
        }
        _ => dispatch::respond(shared, sender, msg).await,
    }
    shared
        .metrics
        .request(msg.msg_type(), taken.elapsed(), true);
    shared.iopub.status(msg, ExecutionState::Idle).await;
}
