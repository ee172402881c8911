//! What the registry answers with: listings, `%skill info`, failures and
//! reload reports. Plain data (serialisable for `skill_reply`), no logic
//! beyond formatting.

use std::path::PathBuf;
use std::time::Duration;

use semver::Version;
use serde::Serialize;

use super::lifecycle::{State, Transition};
use super::scan::ScanCounts;
use crate::model::{Origin, Source};
use crate::{LoadError, SkillError, SkillHeader};

/// One skill version as `%skill list` and `search` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkillEntry {
    /// `name@version`.
    pub id: String,
    pub header: SkillHeader,
    pub state: State,
    /// Why it is disabled; disabled skills are listed but not selectable.
    pub disabled: Option<String>,
    /// Set when another source of the same name and version hides this
    /// one (its origin).
    pub shadowed_by: Option<Origin>,
    /// Why it is Failed.
    pub error: Option<SkillError>,
}

/// A search result: the version `get(name)` would select, and its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub entry: SkillEntry,
    pub score: u32,
    /// Every version of the name, highest first.
    pub versions: Vec<Version>,
}

/// Everything `%skill info` shows of one skill version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkillInfo {
    pub entry: SkillEntry,
    /// Runs in progress.
    pub executions: usize,
    /// The last transitions, oldest first.
    pub history: Vec<Transition>,
    /// Sources of the same name and version it hides.
    pub shadowed: Vec<Source>,
    /// `name@version` of the skills whose dependencies it satisfies.
    pub dependents: Vec<String>,
    /// The versions its dependencies resolved to, once initialised.
    pub resolved: Vec<String>,
    /// Every version of the name, highest first.
    pub versions: Vec<Version>,
}

/// A skill or file that does not load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// `name@version`, when the file ever said.
    pub skill: Option<String>,
    /// The manifest, when the skill has one.
    pub path: Option<PathBuf>,
    pub error: SkillError,
    /// The file's own error (file, field, line, remedy), when the file is
    /// what does not load.
    pub load_error: Option<LoadError>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.skill {
            write!(f, "{s}: ")?;
        }
        write!(f, "{}", self.error.message)?;
        if !self.error.hint.is_empty() {
            write!(f, " (hint: {})", self.error.hint)?;
        }
        Ok(())
    }
}

/// What a discovery or reload changed, for the log and `%skill reload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReloadReport {
    /// `name@version` of versions now known that were not.
    pub added: Vec<String>,
    /// Versions whose source changed (content, or which file is in effect).
    pub updated: Vec<String>,
    /// Versions, and broken files (by path), no longer there.
    pub removed: Vec<String>,
    pub failed: Vec<Failure>,
    /// Manifests looked at that had not changed.
    pub unchanged: usize,
    /// The I/O this took.
    pub io: ScanCounts,
    pub elapsed: Duration,
}

impl ReloadReport {
    /// Nothing added, updated, removed or failed.
    pub fn is_quiet(&self) -> bool {
        self.added.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && self.failed.is_empty()
    }
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (what, list) in [
            ("added", &self.added),
            ("updated", &self.updated),
            ("removed", &self.removed),
        ] {
            if !list.is_empty() {
                parts.push(format!("{what} {}", list.join(", ")));
            }
        }
        if !self.failed.is_empty() {
            parts.push(format!("{} failed", self.failed.len()));
        }
        if parts.is_empty() {
            parts.push("no changes".into());
        }
        write!(
            f,
            "{}; {} unchanged ({:.1} ms)",
            parts.join("; "),
            self.unchanged,
            self.elapsed.as_secs_f64() * 1e3
        )?;
        for failure in &self.failed {
            write!(f, "\n  failed: {failure}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn a_report_reads_as_one_line_then_its_failures() {
        let report = ReloadReport {
            added: vec!["a@1.0.0".into()],
            removed: vec!["b@2.0.0".into()],
            failed: vec![Failure {
                skill: Some("c@1.0.0".into()),
                path: None,
                error: SkillError::new(ErrorCode::ValidationError, "bad yaml", "fix it"),
                load_error: None,
            }],
            unchanged: 7,
            elapsed: Duration::from_micros(1500),
            ..ReloadReport::default()
        };
        assert_eq!(
            report.to_string(),
            "added a@1.0.0; removed b@2.0.0; 1 failed; 7 unchanged (1.5 ms)\n  failed: c@1.0.0: bad yaml (hint: fix it)"
        );
        assert!(!report.is_quiet());
        assert_eq!(
            ReloadReport::default().to_string(),
            "no changes; 0 unchanged (0.0 ms)"
        );
    }
}
