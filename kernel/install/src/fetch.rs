//! Getting a source's files into the staging area: `git` for
//! repositories, HTTP or the file system for archives, a copy for folders.
//!
//! `git` runs as the daemon's user with no terminal prompt, no hooks and
//! no submodules, under a time limit; a download is streamed with a size
//! limit. Nothing fetched is run.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;

use crate::source::Source;
use crate::{unpack, InstallError};

/// The most an archive may weigh, downloaded or read.
pub const MAX_ARCHIVE_BYTES: u64 = 100 << 20;
/// How long a clone or a download may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Fetches `source` into `dest` (an empty folder). Returns what it
/// resolved to: a git commit, else the URL or path.
pub async fn fetch(source: &Source, dest: &Path) -> Result<String, InstallError> {
    match source {
        Source::Git { url, git_ref } => git(url, git_ref.as_deref(), dest).await,
        Source::Archive { location } => {
            let bytes = archive_bytes(location).await?;
            let (what, dest, owned) = (location.clone(), dest.to_path_buf(), bytes);
            blocking(move || unpack::archive(&what, &owned, &dest)).await?;
            Ok(location.clone())
        }
        Source::Folder { path } => {
            let (from, to) = (path.clone(), dest.to_path_buf());
            blocking(move || unpack::folder(&from, &to)).await?;
            Ok(path.display().to_string())
        }
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, InstallError> + Send + 'static,
) -> Result<T, InstallError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(InstallError::Internal(e.to_string())))
}

/// `git clone` of `url` at `git_ref` (a branch, tag or commit) into `dest`,
/// without its `.git`.
async fn git(url: &str, git_ref: Option<&str>, dest: &Path) -> Result<String, InstallError> {
    let shallow = {
        let mut args = vec!["clone", "--quiet", "--depth", "1", "--no-tags"];
        if let Some(r) = git_ref {
            args.extend(["--branch", r]);
        }
        args.extend(["--", url]);
        args
    };
    let cloned = run_git(&shallow, Some(dest)).await;
    if let Err(first) = cloned {
        // A commit is not a `--branch`: clone in full, then check it out.
        let Some(r) = git_ref else { return Err(first) };
        let _ = std::fs::remove_dir_all(dest);
        run_git(
            &["clone", "--quiet", "--no-checkout", "--", url],
            Some(dest),
        )
        .await
        .map_err(|_| first.clone())?;
        let dir = dest.display().to_string();
        run_git(
            &["-C", &dir, "checkout", "--quiet", "--detach", r, "--"],
            None,
        )
        .await
        .map_err(|_| InstallError::BadRef {
            url: url.to_owned(),
            git_ref: r.to_owned(),
        })?;
    }
    let dir = dest.display().to_string();
    let commit = run_git(&["-C", &dir, "rev-parse", "HEAD"], None).await?;
    let _ = std::fs::remove_dir_all(dest.join(".git"));
    // A repository may hold links as well as an archive may.
    let (what, tree) = (url.to_owned(), dest.to_path_buf());
    blocking(move || unpack::check_links(&what, &tree)).await?;
    Ok(commit.trim().to_owned())
}

/// Runs `git ARGS [dest]`; its stdout, or its stderr as the error.
async fn run_git(args: &[&str], dest: Option<&Path>) -> Result<String, InstallError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.file.allow=always",
    ])
    .args(args)
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_ASKPASS", "/bin/false")
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .env("GIT_SSH_COMMAND", "ssh -oBatchMode=yes")
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    if let Some(d) = dest {
        cmd.arg(d);
    }
    let out = match tokio::time::timeout(FETCH_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(InstallError::Fetch {
                source_text: args.join(" "),
                reason: format!("cannot run git: {e}"),
                remedy: "install git on the kernel's host".into(),
            })
        }
        Err(_) => {
            return Err(InstallError::Fetch {
                source_text: args.join(" "),
                reason: format!("git took longer than {} s", FETCH_TIMEOUT.as_secs()),
                remedy: "check the URL and the network".into(),
            })
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let url = args
            .iter()
            .rev()
            .find(|a| a.contains('/') || a.contains(':'))
            .copied()
            .unwrap_or("");
        return Err(InstallError::Fetch {
            source_text: url.to_owned(),
            reason: if stderr.is_empty() {
                format!("git failed ({})", out.status)
            } else {
                stderr
            },
            remedy: "check that the repository exists and is reachable, and the ref".into(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The archive's bytes: downloaded (http, https) or read (a path).
async fn archive_bytes(location: &str) -> Result<Vec<u8>, InstallError> {
    let too_big = || {
        InstallError::unsafe_source(
            location,
            format!("the archive is over {} MiB", MAX_ARCHIVE_BYTES >> 20),
        )
    };
    if !(location.starts_with("http://") || location.starts_with("https://")) {
        let path = Path::new(location);
        let meta = std::fs::metadata(path).map_err(|e| InstallError::io(path, e))?;
        if meta.len() > MAX_ARCHIVE_BYTES {
            return Err(too_big());
        }
        return std::fs::read(path).map_err(|e| InstallError::io(path, e));
    }
    let failed = |reason: String| InstallError::Fetch {
        source_text: location.to_owned(),
        reason,
        remedy: "check the URL and the network".into(),
    };
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(location)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("the server answered {}", response.status())));
    }
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| failed(e.to_string()))?;
        if bytes.len() as u64 + chunk.len() as u64 > MAX_ARCHIVE_BYTES {
            return Err(too_big());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
