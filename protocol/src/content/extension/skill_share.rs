//! What sharing skills answers with: workspace trust (`trust`,
//! `untrust`), installs (`install`, `update`, `installed`) and a skill's
//! own tests (`test`). The requests are in [`super::skill`].

use serde::{Deserialize, Serialize};

/// How `test` answers the tests' model calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestMode {
    #[default]
    Live,
    Record,
    Replay,
}

/// `install` / `update`: what was put into place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallReport {
    /// The folder's name in the user's skill directory (the skill's name).
    pub name: String,
    /// `name@version`.
    pub skill: String,
    pub path: String,
    pub source: String,
    /// The commit a git source resolved to; the URL or path otherwise.
    pub resolved: String,
    /// The skill's digest (blake3 of its files, hex).
    pub digest: String,
    /// The digest before, for an update.
    pub previous_digest: Option<String>,
    /// `signed by KEY`, `not signed …`, `bad signature: …`, `signatures not checked`.
    pub signature: String,
    pub signed_by: Option<String>,
    /// Whether a trusted key's signature trusted it (workspace trust).
    pub trusted: bool,
}

/// `installed`: one installed skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledSkill {
    pub name: String,
    pub skill: String,
    pub source: String,
    pub subdir: Option<String>,
    pub resolved: String,
    pub digest: String,
    pub installed_at: String,
    pub signed_by: Option<String>,
    /// `ok`, `modified` (its files differ from what was installed) or
    /// `missing`.
    pub state: String,
}

/// `test`: how each of a skill's tests went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillTestReport {
    /// `name@version`.
    pub skill: String,
    pub mode: TestMode,
    /// The model asked for, if one was.
    pub model: Option<String>,
    pub passed: usize,
    pub failed: usize,
    pub tests: Vec<SkillTestResult>,
    /// Where the answers were kept (`record`, when every test ran to an
    /// answer; a partial recording is not kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
}

/// One test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillTestResult {
    pub name: String,
    pub passed: bool,
    /// What did not hold, or why the run failed.
    pub failures: Vec<String>,
    pub answer: String,
    pub elapsed_ms: f64,
}

impl SkillTestReport {
    /// As a person reads it: one line per test, failures under it.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}: {} passed, {} failed ({})",
            self.skill,
            self.passed,
            self.failed,
            match self.mode {
                TestMode::Live => "live",
                TestMode::Record => "recorded",
                TestMode::Replay => "replayed",
            }
        );
        match (&self.recorded, self.mode) {
            (Some(path), _) => out.push_str(&format!("\n  answers kept in {path}")),
            (None, TestMode::Record) => {
                out.push_str("\n  answers not kept: a test did not run to an answer")
            }
            _ => {}
        }
        if self.tests.is_empty() {
            out.push_str("\n  no tests: add `tests` to the manifest, or a tests.yaml beside it");
        }
        for t in &self.tests {
            let mark = if t.passed { "ok  " } else { "FAIL" };
            out.push_str(&format!("\n  {mark} {} ({:.0} ms)", t.name, t.elapsed_ms));
            for f in &t.failures {
                out.push_str(&format!("\n       answer {f}"));
            }
        }
        out
    }
}

/// `trust` / `untrust`: where a skill stands with workspace trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustReport {
    /// `name@version`.
    pub skill: String,
    /// The manifest.
    pub path: Option<String>,
    /// `own` (built in, or a cell's), `not_needed`, `by_config` (`[skills]
    /// trust = "all"`), `trusted`, `untrusted`, `changed` (trusted once,
    /// its files differ now), `refused` (`builtin-only`), `unknown`.
    pub mark: String,
    /// What it asks for beyond the default, as a person reads it.
    pub asks: Vec<String>,
    /// The blake3 digest of its files now (hex).
    pub digest: Option<String>,
    /// When the trust in force (or withdrawn) was given, and how.
    pub trusted_at: Option<String>,
    pub via: Option<String>,
    /// Whether this request changed the trust store.
    pub recorded: bool,
    /// What could not be read, when `mark` is `unknown`.
    pub problem: Option<String>,
    /// `[skills] trust`: `ask`, `all` or `builtin-only`.
    pub policy: String,
}

impl TrustReport {
    /// The report as a person reads it (`%skill trust`, `skillctl skill
    /// trust`): where the skill stands, what it asks for, what changed.
    /// `withdrawing`: the answer to `untrust`.
    pub fn text(&self, withdrawing: bool) -> String {
        let r = self;
        let mut out = match (withdrawing, r.recorded, r.mark.as_str()) {
            (true, true, _) => format!("{}: trust withdrawn", r.skill),
            (true, false, _) => format!("{}: was not trusted", r.skill),
            (false, true, _) => format!("{}: trusted", r.skill),
            (false, false, "own") => format!(
                "{}: built in or defined by a cell; no trust needed",
                r.skill
            ),
            (false, false, "not_needed") => {
                format!(
                    "{}: asks for nothing beyond the default; no trust needed",
                    r.skill
                )
            }
            (false, false, "by_config") => {
                format!(
                    "{}: every skill is trusted ([skills] trust = \"all\")",
                    r.skill
                )
            }
            (false, false, "trusted") => format!("{}: trusted", r.skill),
            (false, false, "untrusted") => format!("{}: not trusted", r.skill),
            (false, false, "changed") => {
                format!("{}: its files changed since it was trusted", r.skill)
            }
            (false, false, "refused") => format!(
                "{}: may not run here ([skills] trust = \"builtin-only\")",
                r.skill
            ),
            (false, false, mark) => format!("{}: {mark}", r.skill),
        };
        if let Some(path) = &r.path {
            out.push_str(&format!("\n  from {path}"));
        }
        if !r.asks.is_empty() {
            out.push_str("\n  it asks for:");
            for ask in &r.asks {
                out.push_str(&format!("\n    - {ask}"));
            }
        }
        if let Some(d) = &r.digest {
            out.push_str(&format!("\n  digest (blake3 of its files): {d}"));
        }
        if let (Some(at), Some(via)) = (&r.trusted_at, &r.via) {
            out.push_str(&format!("\n  trusted at {at} by {via}"));
        }
        if let Some(p) = &r.problem {
            out.push_str(&format!("\n  problem: {p}"));
        }
        out
    }
}

impl InstallReport {
    /// The report as a person reads it (`%skill install`, `skillctl skill
    /// install`).
    pub fn text(&self) -> String {
        let verb = match &self.previous_digest {
            Some(d) if *d == self.digest => "reinstalled (unchanged)",
            Some(_) => "updated",
            None => "installed",
        };
        let mut out = format!(
            "{} {verb} at {}\n  from {} ({})\n  digest {}\n  {}",
            self.skill, self.path, self.source, self.resolved, self.digest, self.signature
        );
        if self.trusted {
            out.push_str("\n  trusted: signed by a key in [skills.signatures] keys");
        }
        out
    }
}
