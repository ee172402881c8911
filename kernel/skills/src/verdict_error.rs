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

    /// The setting that lets programs reach `target` (`host:port`).
    fn host_setting(self, target: &str) -> String {
        let setting = match self {
            Grantor::Cell => "`network = [...]` in the daemon's `[sandbox]` section",
            Grantor::Skill => "`permissions: {network: [...]}` in the skill's manifest",
        };
        format!("if it should be reached, add {target:?} (or a pattern for it) to {setting}; see docs/security.md")
    }

    /// How `path`, on the deny list, can still be read.
    fn trust_setting(self, path: &str) -> String {
        match self {
            Grantor::Cell => {
                "cells cannot reopen it: copy what the command needs into the working directory"
                    .to_string()
            }
            Grantor::Skill => format!(
                "a skill the user trusts with exactly it gets it through `[sandbox.trust]` \
                 (`SKILL = [{path:?}]`) in the daemon's config, with the path in its \
                 `permissions.read`"
            ),
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
            denied_hint(denials, grantor),
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

/// What to do about `denials`: the setting that grants the first host,
/// path or network refused.
fn denied_hint(denials: &[Denial], grantor: Grantor) -> String {
    if let Some(target) = denials.iter().find_map(|d| match d {
        Denial::Host { target } => Some(target),
        _ => None,
    }) {
        return grantor.host_setting(target);
    }
    let path = denials.iter().find_map(|d| match d {
        Denial::Path {
            path: Some(p),
            kept_shut,
            ..
        } => Some((p, *kept_shut)),
        _ => None,
    });
    match path {
        Some((path, true)) => format!(
            "{path} is on the sandbox's deny list (secrets and the kernel's own files), \
             which no grant opens; {}; see docs/security.md",
            grantor.trust_setting(path)
        ),
        Some((path, false)) => format!(
            "if it should be allowed, grant it: {}; see docs/security.md",
            grantor.read_setting(path)
        ),
        None => format!(
            "if it should be allowed, grant it in {}; see docs/security.md",
            grantor.permissions()
        ),
    }
}

fn describe_denials(denials: &[Denial]) -> String {
    let parts: Vec<String> = denials
        .iter()
        .take(3)
        .map(|d| match d {
            Denial::Path { path: Some(p), .. } => format!("access to {p} denied"),
            Denial::Path { line, .. } => format!("a file access denied ({line})"),
            Denial::Network { .. } => "network access denied".to_owned(),
            Denial::Host { target } => format!("{target} is not on its network allow-list"),
        })
        .collect();
    parts.join("; ")
}
