//! Skill formats: the native manifest, Agent Skills `SKILL.md` and
//! Skillrunner workflows, parsed into the one [`Skill`] model with every
//! check done at load.
//!
//! | file | format | module |
//! | --- | --- | --- |
//! | `skill.yaml`, `skill.yml`, `skill.json` | [`SkillFormat::Native`] | `native`, `params`, `bodies` |
//! | `SKILL.md` | [`SkillFormat::AgentSkills`] | `agent` |
//! | another `*.yaml`/`*.yml` with top-level `phases` | [`SkillFormat::Skillrunner`] | `skillrunner`, `gotemplate` |
//!
//! A skill that loads is valid: its name follows the Agent Skills rule, its
//! version is semver, its parameters are well typed, its workflow is an
//! acyclic graph with one output, and every template only names variables
//! that will exist when it renders. Anything else is a [`LoadError`] naming
//! the file, the field, the line where it can be found, and the remedy.
//!
//! These functions are synchronous and do blocking file I/O (a manifest is
//! at most [`MAX_MANIFEST_BYTES`]; an Agent Skills load also lists its
//! folder): from async code call them in `tokio::task::spawn_blocking`.
//! They never touch the registry, a provider or the network.

mod agent;
mod bodies;
mod dag;
mod doc;
mod field_path;
mod gotemplate;
mod json_lines;
pub mod keys;
pub mod limits;
mod lines;
mod native;
mod output_schema;
mod params;
mod phase_refs;
mod sections;
mod skillrunner;
mod strict;
mod tools;
mod validate;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use limits::{MAX_MANIFEST_BYTES, UNVERSIONED};
pub use validate::name_problem;

use crate::error::LoadError;
use crate::model::{Origin, Skill, SkillFormat, SkillHeader};

/// The manifest names that make a folder one skill, in order of preference.
pub const FOLDER_MANIFESTS: &[&str] = &["skill.yaml", "skill.yml", "skill.json", "SKILL.md"];

/// Whether `path` is named like a folder manifest.
pub fn is_folder_manifest(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| FOLDER_MANIFESTS.contains(&n))
}

/// The manifest of the skill folder `dir`: the first of
/// [`FOLDER_MANIFESTS`] that is a file there.
pub fn folder_manifest(dir: &Path) -> Option<PathBuf> {
    FOLDER_MANIFESTS
        .iter()
        .map(|m| dir.join(m))
        .find(|p| p.is_file())
}

/// Which format `path` holds, from its name: `skill.yaml`, `skill.yml`,
/// `skill.json` → native; `SKILL.md` → Agent Skills; any other `*.yaml` /
/// `*.yml` → Skillrunner when it has a top-level `phases:` key (the file's
/// first [`MAX_MANIFEST_BYTES`] are scanned for that line, so a broken
/// Skillrunner file is still recognised and reported), else `None`.
pub fn detect(path: &Path) -> Option<SkillFormat> {
    let name = path.file_name()?.to_str()?;
    match name {
        "skill.yaml" | "skill.yml" | "skill.json" => Some(SkillFormat::Native),
        "SKILL.md" => Some(SkillFormat::AgentSkills),
        _ if name.ends_with(".yaml") || name.ends_with(".yml") => {
            let mut head = Vec::new();
            std::fs::File::open(path)
                .ok()?
                .take(MAX_MANIFEST_BYTES)
                .read_to_end(&mut head)
                .ok()?;
            String::from_utf8_lossy(&head)
                .lines()
                .any(skillrunner::is_phases_line)
                .then_some(SkillFormat::Skillrunner)
        }
        _ => None,
    }
}

/// Loads and checks the skill in `path` (every check, templates compiled).
pub fn load_file(path: &Path, origin: Origin) -> Result<Skill, LoadError> {
    let (format, text) = read(path)?;
    parse_str(&text, format, path, origin)
}

/// Loads what the registry keeps of an unused skill: metadata, kind,
/// parameters and dependencies, checked (with the other cheap sections of
/// a native manifest). The body — templates, the phase graph, context
/// globs, a `SKILL.md`'s instructions and resources — is left to
/// [`load_file`] (which the registry runs on first use), so a header that
/// loads may still fail there.
pub fn load_header(path: &Path, origin: Origin) -> Result<SkillHeader, LoadError> {
    let (format, text) = read(path)?;
    check_size(path, text.len() as u64)?;
    match format {
        SkillFormat::Native => {
            let doc = native_doc(path, &text);
            native::header(doc, &doc.parse()?, origin)
        }
        SkillFormat::AgentSkills => agent::header(path, &text, origin),
        SkillFormat::Skillrunner => skillrunner::header(path, &text, origin),
    }
}

/// Parses `text` as `format`: a `%%skill` cell (then `path` is a display
/// name such as `<%%skill cell>` and `origin` is [`Origin::Cell`]) or a
/// file already read. Native text is JSON when `path` ends in `.json` or
/// the text starts with `{`, YAML otherwise.
pub fn parse_str(
    text: &str,
    format: SkillFormat,
    path: &Path,
    origin: Origin,
) -> Result<Skill, LoadError> {
    check_size(path, text.len() as u64)?;
    match format {
        SkillFormat::Native => {
            let doc = native_doc(path, text);
            native::skill(doc, &doc.parse()?, origin)
        }
        SkillFormat::AgentSkills => agent::skill(path, text, origin),
        SkillFormat::Skillrunner => skillrunner::skill(path, text, origin),
    }
}

fn native_doc<'a>(path: &'a Path, text: &'a str) -> doc::Doc<'a> {
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    doc::Doc::new(path, text, json)
}

fn check_size(path: &Path, bytes: u64) -> Result<(), LoadError> {
    if bytes > MAX_MANIFEST_BYTES {
        return Err(LoadError::new(
            path,
            format!("the file is {bytes} bytes; a skill manifest is at most {MAX_MANIFEST_BYTES}"),
            "keep the manifest small: move long reference text into resource files",
        ));
    }
    Ok(())
}

/// Reads a skill file, refusing an unknown name, an oversized file (before
/// reading it) and text that is not UTF-8.
fn read(path: &Path) -> Result<(SkillFormat, String), LoadError> {
    let format = detect(path).ok_or_else(|| {
        LoadError::new(
            path,
            "not a skill file",
            "name it skill.yaml, skill.yml, skill.json or SKILL.md, or give a Skillrunner YAML a top-level `phases:`",
        )
    })?;
    let io = |e: std::io::Error| {
        LoadError::new(
            path,
            format!("cannot read the file: {e}"),
            "check that it exists and is readable",
        )
    };
    let file = std::fs::File::open(path).map_err(io)?;
    check_size(path, file.metadata().map_err(io)?.len())?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    check_size(path, bytes.len() as u64)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        LoadError::new(path, "the file is not UTF-8 text", "save it as UTF-8").line(Some(line))
    })?;
    Ok((format, text))
}

#[cfg(test)]
mod tests;
