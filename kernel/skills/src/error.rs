//! Skill errors: load errors that point into a file, and execution errors
//! with a stable code and a remedy.
//!
//! A notebook shows a [`SkillError`] as `ename` = its code
//! (`SKILL_NOT_FOUND`), `evalue` = the message, and a traceback of the
//! message and the hint; `skill_reply` carries the same fields as JSON.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The stable codes of skill errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No skill by that name (or no version matching the request).
    SkillNotFound,
    /// Bad parameters, or a skill that does not load.
    ValidationError,
    /// The skill ran and failed.
    SkillExecutionError,
    /// The execution took longer than its timeout.
    SkillTimeout,
    /// Too many recent failures; the skill is refused until it recovers.
    CircuitBreakerOpen,
    /// A dependency is missing, conflicting or cyclic.
    DependencyError,
    /// The model backend could not be reached.
    ProviderUnavailable,
    /// The sandbox stopped something the skill was not allowed to do.
    SecurityViolation,
    /// The skill asks for more than the default and is not trusted.
    TrustRequired,
    /// A skill could not be installed, updated or removed.
    InstallError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SkillNotFound => "SKILL_NOT_FOUND",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::SkillExecutionError => "SKILL_EXECUTION_ERROR",
            ErrorCode::SkillTimeout => "SKILL_TIMEOUT",
            ErrorCode::CircuitBreakerOpen => "CIRCUIT_BREAKER_OPEN",
            ErrorCode::DependencyError => "DEPENDENCY_ERROR",
            ErrorCode::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            ErrorCode::SecurityViolation => "SECURITY_VIOLATION",
            ErrorCode::TrustRequired => "TRUST_REQUIRED",
            ErrorCode::InstallError => "INSTALL_ERROR",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A skill operation that failed, for the user.
#[derive(Debug, Clone, Error, PartialEq, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct SkillError {
    pub code: ErrorCode,
    /// What went wrong, naming the skill (and phase, parameter, file).
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// The skill concerned, `name@version` when known.
    #[serde(default)]
    pub skill: Option<String>,
}

impl SkillError {
    pub fn new(code: ErrorCode, message: impl Into<String>, hint: impl Into<String>) -> Self {
        SkillError {
            code,
            message: message.into(),
            hint: hint.into(),
            skill: None,
        }
    }

    pub fn for_skill(mut self, skill: impl Into<String>) -> Self {
        self.skill = Some(skill.into());
        self
    }

    pub fn not_found(name: &str, hint: impl Into<String>) -> Self {
        SkillError::new(
            ErrorCode::SkillNotFound,
            format!("no skill named `{name}`"),
            hint,
        )
    }

    /// The Jupyter traceback lines: the message, then the hint.
    pub fn traceback(&self) -> Vec<String> {
        let mut lines = vec![format!("{}: {}", self.code, self.message)];
        if !self.hint.is_empty() {
            lines.push(format!("hint: {}", self.hint));
        }
        lines
    }
}

impl From<LoadError> for SkillError {
    fn from(e: LoadError) -> Self {
        SkillError::new(ErrorCode::ValidationError, e.to_string(), e.remedy.clone())
    }
}

/// Why a skill file did not load: the file, the field, the line where
/// known, what is wrong and what to do.
#[derive(Debug, Clone, Error, PartialEq, Serialize, Deserialize)]
#[error("{}", self.render())]
pub struct LoadError {
    pub file: PathBuf,
    /// A dotted path into the manifest (`phases[2].depends_on`).
    pub field: Option<String>,
    /// 1-based line in `file`.
    pub line: Option<usize>,
    pub message: String,
    pub remedy: String,
}

impl LoadError {
    pub fn new(file: &Path, message: impl Into<String>, remedy: impl Into<String>) -> Self {
        LoadError {
            file: file.to_path_buf(),
            field: None,
            line: None,
            message: message.into(),
            remedy: remedy.into(),
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn line(mut self, line: Option<usize>) -> Self {
        self.line = line.or(self.line);
        self
    }

    /// `file:line: field: message (remedy)`.
    fn render(&self) -> String {
        let mut s = self.file.display().to_string();
        if let Some(line) = self.line {
            s.push_str(&format!(":{line}"));
        }
        s.push_str(": ");
        if let Some(field) = &self.field {
            s.push_str(&format!("`{field}`: "));
        }
        s.push_str(&self.message);
        if !self.remedy.is_empty() {
            s.push_str(&format!(" — {}", self.remedy));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_error_names_file_line_field_and_remedy() {
        let e = LoadError::new(
            Path::new("/skills/tr/skill.yaml"),
            "unknown type `promtp`",
            "use one of prompt, workflow, conversation, command, session",
        )
        .field("type")
        .line(Some(4));
        assert_eq!(
            e.to_string(),
            "/skills/tr/skill.yaml:4: `type`: unknown type `promtp` — use one of prompt, \
             workflow, conversation, command, session"
        );
        let as_skill: SkillError = e.into();
        assert_eq!(as_skill.code, ErrorCode::ValidationError);
    }

    #[test]
    fn codes_serialize_as_their_names() {
        assert_eq!(
            serde_json::to_value(ErrorCode::CircuitBreakerOpen).unwrap(),
            "CIRCUIT_BREAKER_OPEN"
        );
        assert_eq!(ErrorCode::SkillTimeout.to_string(), "SKILL_TIMEOUT");
    }
}
