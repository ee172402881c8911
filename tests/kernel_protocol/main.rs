//! The Jupyter protocol as real clients see it: one daemon process, real
//! ZeroMQ sockets, the `skillctl` client library.
//!
//! One test binary, split by what each file proves:
//! * `messages` — the envelope rules every reply and IOPub message follows;
//! * `channels` — stdin, interrupt, heartbeat and control while a cell runs;
//! * `cells` — what commands, magics and prompts publish;
//! * `introspection` — completion, inspection and history requests.

use std::time::Duration;

mod cells;
mod channels;
mod introspection;
mod messages;

/// How long any one request may take before the test fails.
const T: Duration = Duration::from_secs(20);

/// The IOPub message types an execution published, in order.
fn types(outcome: &skillctl::ExecuteOutcome) -> Vec<String> {
    outcome
        .iopub
        .iter()
        .map(|m| m.msg_type().to_owned())
        .collect()
}
