//! Choosing a version: `name`, `name@1.2.3`, `name@1.2`, `name@^1`,
//! `name@>=0.3,<0.5`.
//!
//! A requirement written as a bare version pins it as far as it is written
//! (`1.2.3` exactly, `1.2` any 1.2.x, `1` any 1.x — Cargo's `=` operator);
//! anything starting with an operator is a Cargo requirement as written
//! (`^1`, `~1.2`, `>=0.3, <0.5`, `*`). Among the versions that match, the
//! first enabled one in order of preference wins: a `%%skill` cell's
//! version, then the highest. Errors are [`SkillError`]s with
//! `SKILL_NOT_FOUND` and a hint naming a close name or the versions that
//! exist. This module never looks at files or lifecycle state.

use semver::{Version, VersionReq};

use crate::template::nearest;
use crate::{ErrorCode, SkillError};

/// What `%skill run NAME@REQ` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillSpec {
    pub name: String,
    /// `None`: any version.
    pub req: Option<VersionReq>,
    /// The requirement as written, for messages.
    pub req_text: Option<String>,
}

impl SkillSpec {
    /// Parses `name` or `name@requirement`.
    pub fn parse(spec: &str) -> Result<SkillSpec, SkillError> {
        let spec = spec.trim();
        let (name, req_text) = match spec.split_once('@') {
            Some((n, r)) => (n.trim(), Some(r.trim())),
            None => (spec, None),
        };
        if name.is_empty() {
            return Err(bad_spec(spec, "the skill name is missing"));
        }
        let req = match req_text {
            None => None,
            Some(text) => {
                let written = if text.starts_with(|c: char| c.is_ascii_digit()) {
                    format!("={text}")
                } else {
                    text.to_string()
                };
                let req = VersionReq::parse(&written).map_err(|e| {
                    bad_spec(
                        spec,
                        &format!("`{text}` is not a version requirement ({e})"),
                    )
                })?;
                Some(req)
            }
        };
        Ok(SkillSpec {
            name: name.to_string(),
            req,
            req_text: req_text.map(str::to_string),
        })
    }

    /// The spec naming exactly `name@version`.
    pub fn exact(name: &str, version: &Version) -> SkillSpec {
        SkillSpec {
            name: name.to_string(),
            req: VersionReq::parse(&format!("={version}")).ok(),
            req_text: Some(version.to_string()),
        }
    }

    pub fn matches(&self, version: &Version) -> bool {
        self.req.as_ref().is_none_or(|r| r.matches(version))
    }
}

impl std::fmt::Display for SkillSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.req_text {
            Some(r) => write!(f, "{}@{r}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

fn bad_spec(spec: &str, why: &str) -> SkillError {
    SkillError::new(
        ErrorCode::ValidationError,
        format!("`{spec}` does not name a skill: {why}"),
        "write `name`, `name@1.2.3`, `name@1.2`, `name@^1` or `name@>=0.3,<0.5`",
    )
}

/// One version a name offers, in order of preference.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub version: &'a Version,
    /// Why it is disabled, if it is.
    pub disabled: Option<&'a str>,
}

/// The index in `offers` of the version `spec` selects: the first enabled
/// offer that matches. `offers` empty means the name is unknown; `names`
/// are every known name, for the "did you mean" hint.
pub fn pick<'n>(
    spec: &SkillSpec,
    offers: &[Offer<'_>],
    names: impl Iterator<Item = &'n str>,
) -> Result<usize, SkillError> {
    if offers.is_empty() {
        return Err(unknown_name(&spec.name, names));
    }
    let matching = || {
        offers
            .iter()
            .enumerate()
            .filter(|(_, o)| spec.matches(o.version))
    };
    if let Some((i, _)) = matching().find(|(_, o)| o.disabled.is_none()) {
        return Ok(i);
    }
    if let Some((_, o)) = matching().next() {
        let id = format!("{}@{}", spec.name, o.version);
        return Err(SkillError::new(
            ErrorCode::SkillNotFound,
            format!("`{id}` is disabled: {}", o.disabled.unwrap_or_default()),
            format!("`%skill enable {id}` makes it selectable again"),
        )
        .for_skill(id));
    }
    let (list, highest) = present(offers.iter().map(|o| o.version));
    let highest = highest.map(|v| v.to_string()).unwrap_or_default();
    Err(SkillError::new(
        ErrorCode::SkillNotFound,
        format!(
            "no version of `{}` matches `{}`",
            spec.name,
            spec.req_text.as_deref().unwrap_or("*")
        ),
        format!(
            "versions present: {list}; ask for one of them, e.g. `{}@{highest}`",
            spec.name
        ),
    ))
}

/// The distinct versions, lowest first, as `1.0.0, 1.3.0`, and the highest.
pub fn present<'v>(versions: impl Iterator<Item = &'v Version>) -> (String, Option<&'v Version>) {
    let mut v: Vec<&Version> = versions.collect();
    v.sort();
    v.dedup();
    let list = v
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    (list, v.last().copied())
}

/// `SKILL_NOT_FOUND` for a name nobody declares, with the closest name.
pub fn unknown_name<'n>(name: &str, names: impl Iterator<Item = &'n str>) -> SkillError {
    let hint = match nearest(name, names) {
        Some(n) => format!("did you mean `{n}`? `%skill list` shows every skill"),
        None => "`%skill list` shows every skill; skills are found in `.skillkernel/skills` \
                 of the working directory, the configured directories and the user's \
                 skill directory"
            .into(),
    };
    SkillError::not_found(name, hint)
}

#[cfg(test)]
mod tests;
