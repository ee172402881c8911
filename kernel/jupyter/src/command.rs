//! `!command` cells: `/bin/sh -c COMMAND` run in the sandbox (see
//! [`skillkernel_sandbox`]), its stdout and stderr streamed into the notebook as
//! they come.
//!
//! The cell's policy is the sandbox default in the kernel's working
//! directory, widened by the daemon's `[sandbox]` section. An interrupt or
//! the `command_timeout` kills the command's whole process group.

use std::sync::Arc;

use skillkernel_protocol::content::StreamName;

use crate::errors::KernelError;
use crate::exec_context::{ExecContext, Output};
use skillkernel_sandbox::audit::Subject;
use skillkernel_sandbox::run::{OutputSink, Stream};
use skillkernel_sandbox::verdict::Verdict;
use skillkernel_sandbox::Sandbox;
use skillkernel_skills::verdict_error::{verdict_error, Grantor};
use skillkernel_skills::ErrorCode;

/// Streams a program's output into the cell's IOPub stream messages.
pub struct CellSink<'o, 'a> {
    pub out: &'o mut Output<'a>,
}

impl OutputSink for CellSink<'_, '_> {
    async fn output(&mut self, stream: Stream, text: &str) {
        let name = match stream {
            Stream::Stdout => StreamName::Stdout,
            Stream::Stderr => StreamName::Stderr,
        };
        self.out.stream(name, text).await;
    }

    async fn flush(&mut self) {
        self.out.flush_stream().await;
    }
}

/// Runs `script` with `sh -c` in the sandbox, streaming its output.
pub async fn run(ctx: &mut ExecContext<'_>, script: &str) -> Result<(), KernelError> {
    let sandbox: Arc<Sandbox> = ctx.shared.sandbox().ok_or(KernelError::NoSandbox)?;
    let policy = sandbox
        .cell_policy()
        .map_err(|e| KernelError::CommandSpawn(e.to_string()))?;
    let argv = ["/bin/sh", "-c", script].map(String::from);
    let timeout = ctx.shared.command_timeout();
    let cancel = ctx.cancel.clone();
    let mut sink = CellSink { out: &mut ctx.out };
    let verdict = sandbox
        .run(
            &Subject::cell(),
            &policy,
            &argv,
            None,
            &mut sink,
            timeout,
            &cancel,
        )
        .await
        .map_err(|e| KernelError::CommandSpawn(e.to_string()))?;
    ctx.out.flush_stream().await;
    match verdict {
        Verdict::Success => Ok(()),
        Verdict::Interrupted => Err(KernelError::Interrupted),
        Verdict::Failed { status } => Err(KernelError::CommandFailed { status }),
        Verdict::TimedOut { .. } => Err(KernelError::CommandTimeout {
            secs: timeout.as_secs(),
        }),
        // The sandbox stepped in (SECURITY_VIOLATION, SKILL_TIMEOUT for
        // the CPU limit), or the command never started.
        ref verdict => match verdict_error(verdict, "the command", Grantor::Cell) {
            Some(e) if e.code == ErrorCode::SkillExecutionError => {
                Err(KernelError::CommandSpawn(e.message))
            }
            Some(e) => Err(KernelError::Skill(e)),
            None => Ok(()),
        },
    }
}
