//! Context files of a conversation skill: the files its include globs
//! match under the run's working directory, less those its exclude globs
//! match, within its count and size limits.
//!
//! Limits are checked before anything is read into a prompt, and a breach
//! is an error naming the limit and the offending file or count — never a
//! silently truncated context. Files outside the working directory
//! (through `..` or a symlink) are refused. This module only reads files.

use std::path::{Path, PathBuf};

use crate::model::ContextFiles;
use crate::{ErrorCode, SkillError};

/// A file read as context, named relative to the working directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextFile {
    pub path: PathBuf,
    pub content: String,
}

fn refuse(message: String, hint: &str) -> SkillError {
    SkillError::new(ErrorCode::ValidationError, message, hint)
}

/// Reads the context files `spec` selects under `workdir`, sorted by path.
/// Blocking: call it from `spawn_blocking`.
pub fn gather(spec: &ContextFiles, workdir: &Path) -> Result<Vec<ContextFile>, SkillError> {
    let root = workdir.canonicalize().map_err(|e| {
        refuse(
            format!(
                "the working directory {} cannot be read: {e}",
                workdir.display()
            ),
            "run the skill from an existing directory",
        )
    })?;
    let excludes = spec
        .exclude
        .iter()
        .map(|g| {
            glob::Pattern::new(g).map_err(|e| {
                refuse(
                    format!("exclude glob `{g}` is not valid: {e}"),
                    "fix `context.exclude` in the manifest",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut found: Vec<(PathBuf, PathBuf)> = Vec::new();
    for include in &spec.include {
        // The root is escaped so that `[` in a directory name stays literal.
        let pattern = format!(
            "{}/{}",
            glob::Pattern::escape(&root.to_string_lossy()),
            include.trim_start_matches('/')
        );
        let paths = glob::glob(&pattern).map_err(|e| {
            refuse(
                format!("include glob `{include}` is not valid: {e}"),
                "fix `context.include` in the manifest",
            )
        })?;
        for path in paths.flatten() {
            if !path.is_file() {
                continue;
            }
            let real = path.canonicalize().unwrap_or_else(|_| path.clone());
            let Ok(relative) = real.strip_prefix(&root).map(Path::to_path_buf) else {
                return Err(refuse(
                    format!(
                        "context file {} is outside the working directory {}",
                        path.display(),
                        root.display()
                    ),
                    "context globs are relative to the working directory and may not leave it",
                ));
            };
            if excludes.iter().any(|p| p.matches_path(&relative)) {
                continue;
            }
            if !found.iter().any(|(r, _)| *r == relative) {
                found.push((relative, real));
            }
        }
    }
    found.sort();
    if found.len() > spec.max_files {
        return Err(refuse(
            format!(
                "the context globs match {} files, more than the limit of {} (max_files); the first are {}",
                found.len(),
                spec.max_files,
                first_names(&found)
            ),
            "narrow `context.include`, add `context.exclude` globs, or raise `context.max_files`",
        ));
    }
    read_within_limits(spec, found)
}

fn first_names(found: &[(PathBuf, PathBuf)]) -> String {
    let names: Vec<String> = found
        .iter()
        .take(3)
        .map(|(r, _)| r.display().to_string())
        .collect();
    names.join(", ")
}

fn read_within_limits(
    spec: &ContextFiles,
    found: Vec<(PathBuf, PathBuf)>,
) -> Result<Vec<ContextFile>, SkillError> {
    let mut total = 0u64;
    let mut files = Vec::with_capacity(found.len());
    for (relative, real) in found {
        let size = std::fs::metadata(&real).map(|m| m.len()).unwrap_or(0);
        if size > spec.max_file_bytes {
            return Err(refuse(
                format!(
                    "context file {} is {size} bytes, more than the limit of {} (max_file_bytes)",
                    relative.display(),
                    spec.max_file_bytes
                ),
                "exclude it with a `context.exclude` glob, or raise `context.max_file_bytes`",
            ));
        }
        total += size;
        if total > spec.max_total_bytes {
            return Err(refuse(
                format!(
                    "the context files come to more than {} bytes (max_total_bytes) by {}",
                    spec.max_total_bytes,
                    relative.display()
                ),
                "narrow `context.include`, add `context.exclude` globs, or raise `context.max_total_bytes`",
            ));
        }
        let bytes = std::fs::read(&real).map_err(|e| {
            refuse(
                format!("context file {} cannot be read: {e}", relative.display()),
                "check its permissions, or exclude it with a `context.exclude` glob",
            )
        })?;
        let content = String::from_utf8(bytes).map_err(|_| {
            refuse(
                format!("context file {} is not UTF-8 text", relative.display()),
                "exclude binary files with a `context.exclude` glob (e.g. `**/*.png`)",
            )
        })?;
        files.push(ContextFile {
            path: relative,
            content,
        });
    }
    Ok(files)
}

/// [`gather`] for a conversation skill, on the blocking pool (it reads
/// files); no context globs, no files.
pub async fn gather_off_thread(
    skill: &crate::model::ConversationSkill,
    workdir: &Path,
) -> Result<Vec<ContextFile>, SkillError> {
    if skill.context.include.is_empty() {
        return Ok(Vec::new());
    }
    let (spec, dir) = (skill.context.clone(), workdir.to_path_buf());
    tokio::task::spawn_blocking(move || gather(&spec, &dir))
        .await
        .map_err(|e| {
            SkillError::new(
                ErrorCode::SkillExecutionError,
                format!("reading the context files failed: {e}"),
                "try again; if it persists, report it with the kernel log",
            )
        })?
}
