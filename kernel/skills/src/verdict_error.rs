//! A [`Verdict`] as the error the user sees: the stable skill codes
//! (`SECURITY_VIOLATION`, `SKILL_TIMEOUT`, `SKILL_EXECUTION_ERROR`), each
//! with a message naming what happened and a hint saying what to do.

use crate::{ErrorCode, SkillError};

use skillkernel_sandbox::verdict::{Denial, Limit, Verdict};
use skillkernel_sandbox::{SetupStage, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};

/// Where the user widens what a program may do.
#[derive(Debug, Clone, Copy)]
pub enum Grantor {
    /// A `!command` cell: the daemon's `[sandbox]` section.
    Cell,
    /// A skill: its manifest's `permissions` and `resource_limits`.
    Skill,
}

impl Grantor {
    fn permissions(self) -> &'static str {
        match self {
            Grantor::Cell => "the daemon's `[sandbox]` section (read, write, network, env)",
            Grantor::Skill => "the skill's `permissions` (read, write, network, env)",
        }
    }

    /// The setting that lets programs read `path`.
    fn read_setting(self, path: &str) -> String {
        match self {
            Grantor::Cell => format!("`read = [{path:?}]` in the daemon's `[sandbox]` section"),
            Grantor::Skill => {
                format!("`permissions: {{read: [{path:?}]}}` in the skill's manifest")
            }
        }
    }

    fn limits(self) -> &'static str {
        match self {
            Grantor::Cell => "the limits are the sandbox defaults (docs/security.md)",
            Grantor::Skill => {
                "raise it in the skill's `resource_limits` if the work really needs more"
            }
        }
    }
}

/// The error for `verdict`, `None` for success and interruption.
/// `program` names what ran (`!command`, `reader@1.0.0`).
pub fn verdict_error(verdict: &Verdict, program: &str, grantor: Grantor) -> Option<SkillError> {
    let error = match verdict {
        Verdict::Success | Verdict::Interrupted => return None,
        Verdict::Failed { status } => SkillError::new(
            ErrorCode::SkillExecutionError,
            format!("{program} failed with {status}"),
            "its stderr above says why",
        ),
        Verdict::Denied(denials) => SkillError::new(
            ErrorCode::SecurityViolation,
            format!(
                "the sandbox stopped {program}: {}",
                describe_denials(denials)
            ),
            match denials.iter().find_map(|d| match d {
                Denial::Path { path: Some(p), .. } => Some(p),
                _ => None,
            }) {
                Some(path) => format!(
                    "if it should be allowed, grant it: {}; see docs/security.md",
                    grantor.read_setting(path)
                ),
                None => format!(
                    "if it should be allowed, grant it in {}; see docs/security.md",
                    grantor.permissions()
                ),
            },
        ),
        Verdict::LimitKilled { limit, detail } => SkillError::new(
            match limit {
                Limit::Cpu => ErrorCode::SkillTimeout,
                _ => ErrorCode::SecurityViolation,
            },
            format!("the sandbox stopped {program}: {detail}"),
            match limit {
                Limit::Output => {
                    "write less output, or raise `[sandbox] max_output_bytes`".to_owned()
                }
                _ => grantor.limits().to_owned(),
            },
        ),
        Verdict::TimedOut { after } => SkillError::new(
            ErrorCode::SkillTimeout,
            format!(
                "{program} was still running after {:.1} s and was killed with its process group",
                after.as_secs_f64()
            ),
            "raise its timeout if it needs longer",
        ),
        Verdict::SetupFailed(failure) => {
            let landlock = failure.stage == SetupStage::Landlock;
            let (code, hint) = match failure.exit_code {
                _ if landlock => (
                    ErrorCode::SecurityViolation,
                    "this host cannot enforce Landlock; see `%sandbox status`, or drop `require_landlock`",
                ),
                c if c == EXIT_NOT_FOUND => (
                    ErrorCode::SkillExecutionError,
                    "install the program, or put it on the PATH the sandbox keeps",
                ),
                c if c == EXIT_NOT_EXECUTABLE => (
                    ErrorCode::SkillExecutionError,
                    "the program must be executable and inside a readable path",
                ),
                _ => (
                    ErrorCode::SkillExecutionError,
                    "see `%sandbox status` and the daemon log",
                ),
            };
            SkillError::new(
                code,
                format!("{program} did not start: {}", failure.message),
                hint,
            )
        }
    };
    Some(error)
}

fn describe_denials(denials: &[Denial]) -> String {
    let parts: Vec<String> = denials
        .iter()
        .take(3)
        .map(|d| match d {
            Denial::Path { path: Some(p), .. } => format!("access to {p} denied"),
            Denial::Path { line, .. } => format!("a file access denied ({line})"),
            Denial::Network { .. } => "network access denied".to_owned(),
        })
        .collect();
    parts.join("; ")
}
