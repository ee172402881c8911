//! The files of enabled Agent Skills (`SKILL.md` folders) as resources:
//! `skill://NAME/PATH`, PATH relative to the skill's folder.
//!
//! A listing walks each folder (hidden entries skipped) to
//! [`MAX_DEPTH`] levels and [`MAX_FILES`] files; a read returns at most
//! [`MAX_BYTES`], as text when the file is UTF-8 and base64 otherwise,
//! and only for a file that resolves (links followed) inside the skill's
//! folder.

use std::path::{Component, Path, PathBuf};

use base64::Engine;
use rmcp::model::{ReadResourceResult, Resource, ResourceContents};
use rmcp::ErrorData as McpError;
use serde_json::json;
use skillkernel_skills::SkillKind;

use super::catalog::enabled_skills;
use crate::host::Host;

pub const SCHEME: &str = "skill://";
/// Files listed per skill at most.
pub const MAX_FILES: usize = 200;
/// Folder levels walked below the skill's folder.
pub const MAX_DEPTH: usize = 4;
/// The most of one file a read returns.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// The Agent Skills' folders, by skill name.
async fn folders(host: &dyn Host) -> Vec<(String, PathBuf)> {
    enabled_skills(host)
        .await
        .iter()
        .filter(|s| s.kind() == SkillKind::Agent)
        .filter_map(|s| Some((s.meta.name.clone(), s.source.dir()?)))
        .collect()
}

pub async fn list(host: &dyn Host) -> Vec<Resource> {
    let folders = folders(host).await;
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (name, dir) in folders {
            let mut files = Vec::new();
            walk(&dir, &dir, 0, &mut files);
            files.sort();
            for (relative, size) in files.into_iter().take(MAX_FILES) {
                let shown = relative.to_string_lossy().into_owned();
                out.push(
                    Resource::new(format!("{SCHEME}{name}/{shown}"), format!("{name}/{shown}"))
                        .with_mime_type(mime_type(&relative))
                        .with_size(size)
                        .with_description(format!("A file of the Agent Skill {name}")),
                );
            }
        }
        out
    })
    .await
    .unwrap_or_default()
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= MAX_FILES {
            return;
        }
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth + 1 < MAX_DEPTH {
                walk(root, &path, depth + 1, out);
            }
        } else if meta.is_file() {
            if let Ok(relative) = path.strip_prefix(root) {
                out.push((relative.to_path_buf(), meta.len()));
            }
        }
    }
}

fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "md" => "text/markdown",
        "json" => "application/json",
        "yaml" | "yml" => "application/yaml",
        "py" => "text/x-python",
        "sh" => "text/x-shellscript",
        "js" => "text/javascript",
        "html" => "text/html",
        "csv" => "text/csv",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "pdf" => "application/pdf",
        _ => "text/plain",
    }
}

fn not_found(uri: &str, why: &str) -> McpError {
    McpError::resource_not_found(format!("{uri}: {why}"), Some(json!({"uri": uri})))
}

/// `resources/read` of `uri`.
pub async fn read(host: &dyn Host, uri: &str) -> Result<ReadResourceResult, McpError> {
    let rest = uri
        .strip_prefix(SCHEME)
        .ok_or_else(|| not_found(uri, "not a skill:// resource"))?;
    let (name, relative) = rest
        .split_once('/')
        .ok_or_else(|| not_found(uri, "no file named after the skill"))?;
    let relative = PathBuf::from(relative);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(not_found(
            uri,
            "the path must stay inside the skill's folder",
        ));
    }
    let Some((_, dir)) = folders(host).await.into_iter().find(|(n, _)| n == name) else {
        return Err(not_found(uri, "no enabled Agent Skill of that name"));
    };
    let owned_uri = uri.to_owned();
    tokio::task::spawn_blocking(move || read_file(&owned_uri, &dir, &relative))
        .await
        .map_err(|e| McpError::internal_error(format!("reading {uri} failed: {e}"), None))?
}

fn read_file(uri: &str, dir: &Path, relative: &Path) -> Result<ReadResourceResult, McpError> {
    let root = dir
        .canonicalize()
        .map_err(|e| not_found(uri, &format!("the skill's folder: {e}")))?;
    let path = root
        .join(relative)
        .canonicalize()
        .map_err(|e| not_found(uri, &e.to_string()))?;
    if !path.starts_with(&root) || !path.is_file() {
        return Err(not_found(uri, "no such file inside the skill's folder"));
    }
    let mut bytes = Vec::new();
    use std::io::Read;
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_BYTES).read_to_end(&mut bytes))
        .map_err(|e| not_found(uri, &e.to_string()))?;
    let contents = match String::from_utf8(bytes) {
        Ok(text) => ResourceContents::text(text, uri).with_mime_type(mime_type(relative)),
        Err(e) => ResourceContents::blob(
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            uri,
        )
        .with_mime_type(mime_type(relative)),
    };
    Ok(ReadResourceResult::new(vec![contents]))
}
