//! The control channel, served beside shell so that `interrupt_request`,
//! `shutdown_request` and `kernel_info_request` are answered while a cell
//! runs.

use std::sync::Arc;

use skillkernel_protocol::content::ExecutionState;
use skillkernel_transport::Channel;
use tokio::sync::mpsc;

use crate::dispatch;
use crate::session::Shared;
use crate::shell::read_requests;

pub(crate) async fn serve(shared: Arc<Shared>, channel: Channel) {
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_requests(
        shared.clone(),
        channel.receiver,
        "control",
        queue_tx,
    ));
    while let Some(msg) = queue_rx.recv().await {
        shared.iopub.status(&msg, ExecutionState::Busy).await;
        dispatch::respond(&shared, &channel.sender, &msg).await;
        shared.iopub.status(&msg, ExecutionState::Idle).await;
        // Keeps serving during a shutdown (kernel_info, interrupt, a second
        // shutdown_request); the coordinator stops this task at the end.
    }
    reader.abort();
}
