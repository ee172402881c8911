//! What a running cell works with: its [`ExecContext`] (the kernel's
//! shared state, the cancellation token an interrupt trips, the request),
//! its [`Output`], live displays that grow in place, and how values show.
//!
//! # Architecture invariant
//!
//! A leaf below everything that runs cells (`execute`, `magics`, `prompt`,
//! `command`, `skill_run`, `pull`): it imports none of them, so they can
//! all use it without importing each other.

pub mod live_display;
pub mod output;
pub mod values;

use std::sync::Arc;

use skillkernel_protocol::Message;
use tokio_util::sync::CancellationToken;

use crate::session::Shared;
pub use live_display::LiveDisplay;
pub use output::Output;

/// What a running cell can reach.
pub struct ExecContext<'a> {
    pub shared: &'a Arc<Shared>,
    pub out: Output<'a>,
    /// Tripped by `interrupt_request` / SIGINT.
    pub cancel: CancellationToken,
    /// The `execute_request` being served.
    pub request: &'a Message,
    pub allow_stdin: bool,
}
