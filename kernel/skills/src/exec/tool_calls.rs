//! Running one tool call of a loop ([`super::agent`]): another skill
//! through the executor, a script of an Agent Skill in the sandbox, a
//! reference file read from the skill's folder, a tool of an MCP server
//! through [`RunContext::external`]. Each returns `(ok, text for the
//! model)`; nothing here fails the run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use skillkernel_sandbox::audit::Subject;
use skillkernel_sandbox::run::{OutputSink, Stream};
use skillkernel_sandbox::verdict::Verdict;

use super::call::Run;
use super::{Args, Executor, RunContext, RunRequest};
use crate::tools::REFERENCE_BYTES;
use crate::verdict_error::{verdict_error, Grantor};
use crate::Skill;

/// How deep skills may call skills as tools.
const MAX_DEPTH: u32 = 3;

pub(super) async fn call_skill(
    exec: &Executor,
    ctx: &RunContext,
    req: &RunRequest,
    run: &Run<'_>,
    skill: &Arc<Skill>,
    arguments: &Value,
) -> (bool, String) {
    if req.depth >= MAX_DEPTH {
        return (
            false,
            format!("error: skills call skills {MAX_DEPTH} deep already; answer without it"),
        );
    }
    let mut args = arguments.as_object().cloned().unwrap_or_default();
    let input = match args.remove("input") {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let sub = RunRequest {
        skill: Arc::clone(skill),
        input,
        args: Args::Json(args),
        history: Vec::new(),
        workdir: req.workdir.clone(),
        cancel: run.cancel.child_token(),
        tool_skills: req.tool_skills.clone(),
        depth: req.depth + 1,
    };
    match exec.run_nested(ctx, sub).await {
        Ok(out) => (true, out.text),
        Err(e) => (false, format!("error: {}: {}", e.code, e.message)),
    }
}

/// Calls `tool` of MCP server `server`.
pub(super) async fn call_mcp(
    ctx: &RunContext,
    run: &Run<'_>,
    server: &str,
    tool: &str,
    arguments: &Value,
) -> (bool, String) {
    let Some(external) = &ctx.external else {
        return (false, "error: this kernel has no MCP servers".into());
    };
    match external
        .call(server, tool, arguments.clone(), run.cancel.child_token())
        .await
    {
        Ok(result) if result.ok => (true, result.text),
        Ok(result) => (false, format!("error: {}", result.text)),
        Err(e) => (false, format!("error: {e}")),
    }
}

/// Collects a script's output.
#[derive(Default)]
struct Collect {
    stdout: String,
    stderr: String,
}

impl OutputSink for Collect {
    async fn output(&mut self, stream: Stream, text: &str) {
        match stream {
            Stream::Stdout => self.stdout.push_str(text),
            Stream::Stderr => self.stderr.push_str(text),
        }
    }

    async fn flush(&mut self) {}
}

/// The program that runs a script, by its extension: the system's copy
/// when there is one (the same for every user, and started without a
/// version manager's shim), else the name for `PATH` — whose toolchains
/// in the home directory the sandbox lets it read.
fn interpreter(path: &std::path::Path) -> Option<String> {
    let name = match path.extension().and_then(|e| e.to_str()) {
        Some("py") => "python3",
        Some("sh") => "sh",
        Some("bash") => "bash",
        Some("js" | "mjs") => "node",
        Some("rb") => "ruby",
        Some("pl") => "perl",
        _ => return None,
    };
    let system = ["/usr/bin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| p.is_file());
    Some(system.map_or_else(|| name.to_owned(), |p| p.display().to_string()))
}

pub(super) async fn call_script(
    ctx: &RunContext,
    req: &RunRequest,
    run: &Run<'_>,
    path: &std::path::Path,
    arguments: &Value,
    timeout: Duration,
) -> (bool, String) {
    let skill = &*req.skill;
    let Some(sandbox) = ctx.sandbox.as_deref() else {
        return (
            false,
            "error: this kernel has no sandbox, so it runs no scripts".into(),
        );
    };
    let mut argv: Vec<String> = interpreter(path).into_iter().collect();
    argv.push(path.display().to_string());
    argv.extend(
        arguments["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned)),
    );
    let policy = match super::program::policy_of(sandbox, skill, &Map::new(), &Default::default()) {
        Ok(p) => p,
        Err(e) => return (false, format!("error: {}", e.message)),
    };
    let subject = Subject {
        own_dir: skill.source.dir(),
        ..Subject::skill("skill", &skill.meta.name, &skill.meta.version.to_string())
    };
    let mut sink = Collect::default();
    let verdict = sandbox
        .run(
            &subject,
            &policy,
            &argv,
            None,
            &mut sink,
            timeout,
            &run.cancel,
        )
        .await;
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => return (false, format!("error: the script could not start: {e}")),
    };
    let mut text = sink.stdout;
    if !sink.stderr.trim().is_empty() {
        text.push_str(&format!("\n[stderr]\n{}", sink.stderr));
    }
    match verdict {
        Verdict::Success => (true, text),
        other => {
            let why = verdict_error(
                &other,
                &format!("script `{}`", path.display()),
                Grantor::Skill,
            )
            .map_or_else(|| "it failed".to_owned(), |e| e.message);
            (false, format!("error: {why}\n{text}"))
        }
    }
}

pub(super) async fn read_reference(dir: &std::path::Path, arguments: &Value) -> (bool, String) {
    // The schema's enum allows only the skill's own reference files.
    let Some(relative) = arguments["path"].as_str() else {
        return (false, "error: `path` is missing".into());
    };
    // Listed at load, but the folder may have changed since: the file must
    // still be a plain file inside it, not a link to elsewhere.
    let path = dir.join(relative);
    let inside = match (
        tokio::fs::canonicalize(&path).await,
        tokio::fs::canonicalize(dir).await,
    ) {
        (Ok(file), Ok(dir)) => file.starts_with(dir),
        _ => false,
    };
    let linked = tokio::fs::symlink_metadata(&path)
        .await
        .map_or(true, |m| m.file_type().is_symlink());
    if !inside || linked {
        return (
            false,
            format!("error: {relative} is not a file of the skill's references"),
        );
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            true,
            cap(
                String::from_utf8_lossy(&bytes).into_owned(),
                REFERENCE_BYTES,
            ),
        ),
        Err(e) => (false, format!("error: cannot read {relative}: {e}")),
    }
}

/// `text` cut to at most `limit` bytes (at a character boundary), with a
/// note saying how much there was.
pub(super) fn cap(text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[… cut: {} bytes in all]", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_reference_is_read_but_a_link_out_of_the_folder_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let refs = tmp.path().join("references");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join("words.md"), "use short words").unwrap();
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "the secret").unwrap();
        std::os::unix::fs::symlink(secret.path(), refs.join("link.md")).unwrap();
        let (ok, text) = read_reference(tmp.path(), &json!({"path": "references/words.md"})).await;
        assert!(ok, "{text}");
        assert_eq!(text, "use short words");
        let (ok, text) = read_reference(tmp.path(), &json!({"path": "references/link.md"})).await;
        assert!(!ok);
        assert!(!text.contains("the secret"), "{text}");
    }
}
