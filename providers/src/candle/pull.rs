//! `pull` for the embedded backend: a GGUF file from a Hugging Face-style
//! hub (`{hub}/{org}/{repo}/resolve/{revision}/{file}`), with progress,
//! resume and a checksum.
//!
//! The hub answers the `resolve` URL of a large (LFS) file with a redirect
//! carrying `X-Linked-Etag` (the file's sha256) and `X-Linked-Size`; the
//! download follows the redirect. The bytes go to a hidden `.partial` file
//! beside the models, hashed as they arrive; only a file whose size and
//! sha256 match, and that opens as a supported GGUF model, is renamed into
//! place. A download that breaks leaves the partial file, and the next
//! pull resumes it with a `Range` request.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, ETAG, LOCATION, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{model_name, GgufFile};
use crate::{ProviderError, PullProgress, PullStream};

/// How often progress is reported while bytes flow.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// A file on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// `org/repo`.
    pub repo: String,
    pub revision: String,
    /// Path of the file inside the repository.
    pub file: String,
}

impl HubFile {
    /// Parses `ORG/REPO/PATH/TO/FILE.gguf`, optionally `ORG/REPO:REVISION/…`.
    pub fn parse(spec: &str) -> Option<HubFile> {
        let mut parts = spec.splitn(3, '/');
        let (org, repo, file) = (parts.next()?, parts.next()?, parts.next()?);
        let (repo, revision) = repo.split_once(':').unwrap_or((repo, "main"));
        let ok = |s: &str| !s.is_empty() && !s.contains("..");
        (ok(org) && ok(repo) && ok(revision) && ok(file) && file.to_lowercase().ends_with(".gguf"))
            .then(|| HubFile {
                repo: format!("{org}/{repo}"),
                revision: revision.to_owned(),
                file: file.to_owned(),
            })
    }

    pub fn url(&self, hub: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            hub.trim_end_matches('/'),
            self.repo,
            self.revision,
            self.file
        )
    }

    /// The file name the model gets in the model directory.
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

/// What the hub says about a file before the download.
#[derive(Debug, Default)]
struct Expected {
    sha256: Option<String>,
    size: Option<u64>,
    location: Option<String>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|v| {
        v.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    })
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn fail(reason: impl Into<String>) -> ProviderError {
    ProviderError::Other(reason.into())
}

/// A pull in progress: where it goes and how it reports.
struct Download {
    hub: String,
    target: HubFile,
    dir: PathBuf,
    token: Option<String>,
    progress: mpsc::Sender<Result<PullProgress, ProviderError>>,
}

/// Starts pulling `target` from `hub` into `dir`.
pub(super) fn start(hub: &str, target: HubFile, dir: &Path) -> PullStream {
    let (tx, rx) = mpsc::channel(16);
    let download = Download {
        hub: hub.to_owned(),
        target,
        dir: dir.to_owned(),
        token: std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
        progress: tx,
    };
    tokio::spawn(async move {
        let report = download.progress.clone();
        if let Err(e) = download.run().await {
            let _ = report.send(Err(e)).await;
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

impl Download {
    async fn say(&self, status: impl Into<String>, done: Option<u64>, total: Option<u64>) {
        let _ = self
            .progress
            .send(Ok(PullProgress {
                status: status.into(),
                completed_bytes: done,
                total_bytes: total,
                model: None,
            }))
            .await;
    }

    async fn succeed(&self, name: &str) {
        let _ = self
            .progress
            .send(Ok(PullProgress {
                status: "success".into(),
                completed_bytes: None,
                total_bytes: None,
                model: Some(name.to_owned()),
            }))
            .await;
    }

    fn client(&self, follow: bool) -> Result<reqwest::Client, ProviderError> {
        let policy = if follow {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        };
        reqwest::Client::builder()
            .redirect(policy)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("skillkernel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let request = client.request(method, url);
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    fn unreachable(&self, url: &str, e: reqwest::Error) -> ProviderError {
        ProviderError::Unavailable {
            backend: format!("the model hub at {}", self.hub),
            reason: format!(
                "{url}: {e}; check the network or set [models.candle] hub_url in the config"
            ),
        }
    }

    fn status_error(&self, url: &str, status: StatusCode) -> ProviderError {
        let spec = format!("{}/{}", self.target.repo, self.target.file);
        match status {
            StatusCode::NOT_FOUND => ProviderError::ModelNotFound {
                model: spec,
                hint: format!("the hub has no such file ({url} answered 404); check the repository and file name"),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Unavailable {
                backend: "the model hub".into(),
                reason: format!("{url} answered {status}: the model needs an account; set HF_TOKEN to a token that may read it"),
            },
            other => fail(format!("{url} answered {other}")),
        }
    }

    /// Asks the hub for the checksum and size without following the redirect.
    async fn expected(&self, url: &str) -> Result<Expected, ProviderError> {
        let client = self.client(false)?;
        let response = self
            .request(&client, reqwest::Method::HEAD, url)
            .send()
            .await
            .map_err(|e| self.unreachable(url, e))?;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(self.status_error(url, status));
        }
        let h = response.headers();
        let sha256 = header(h, "x-linked-etag")
            .or_else(|| header(h, ETAG.as_str()))
            .filter(|s| is_sha256(s))
            .map(|s| s.to_lowercase());
        let size = header(h, "x-linked-size")
            .or_else(|| {
                status
                    .is_success()
                    .then(|| header(h, CONTENT_LENGTH.as_str()))
                    .flatten()
            })
            .and_then(|s| s.parse().ok());
        let location = status
            .is_redirection()
            .then(|| header(h, LOCATION.as_str()))
            .flatten()
            .and_then(|l| response.url().join(&l).ok())
            .map(|u| u.to_string());
        Ok(Expected {
            sha256,
            size,
            location,
        })
    }

    async fn run(self) -> Result<(), ProviderError> {
        let name = model_name(Path::new(self.target.file_name()))
            .ok_or_else(|| fail(format!("`{}` has no usable file name", self.target.file)))?;
        let final_path = self.dir.join(self.target.file_name());
        if final_path.exists() {
            self.say(
                format!("`{name}` is already in {}", self.dir.display()),
                None,
                None,
            )
            .await;
            self.succeed(&name).await;
            return Ok(());
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| fail(format!("cannot create {}: {e}", self.dir.display())))?;
        let url = self.target.url(&self.hub);
        self.say(format!("resolving {url}"), None, None).await;
        let expected = self.expected(&url).await?;
        let partial = self
            .dir
            .join(format!(".{}.partial", self.target.file_name()));
        let hasher = self.download(&url, &expected, &partial).await?;

        self.say("verifying sha256 digest", expected.size, expected.size)
            .await;
        let digest = hex::encode(hasher.finalize());
        if let Some(want) = &expected.sha256 {
            if *want != digest {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(fail(format!(
                    "checksum mismatch for {url}: the hub says sha256 {want}, the download has {digest}; the download was discarded, pull again"
                )));
            }
        } else {
            tracing::warn!(%url, "the hub gave no sha256 for this file; only its size was checked");
        }
        self.say("checking the model file", None, None).await;
        let check = partial.clone();
        let opened = tokio::task::spawn_blocking(move || GgufFile::open(&check).map(|_| ()))
            .await
            .map_err(|e| fail(e.to_string()))?;
        if let Err(e) = opened {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, &final_path)
            .await
            .map_err(|e| {
                fail(format!(
                    "cannot move the download to {}: {e}",
                    final_path.display()
                ))
            })?;
        tracing::info!(model = %name, %url, sha256 = %digest, "model pulled");
        self.succeed(&name).await;
        Ok(())
    }

    /// Fetches the file into `partial` (resuming what is there) and returns
    /// the running hash of all of it.
    async fn download(
        &self,
        url: &str,
        expected: &Expected,
        partial: &Path,
    ) -> Result<Sha256, ProviderError> {
        let mut hasher = Sha256::new();
        let mut have = tokio::fs::metadata(partial)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if expected.size.is_some_and(|size| have > size) {
            have = 0;
        }
        let from = expected.location.as_deref().unwrap_or(url);
        let client = self.client(true)?;
        let mut request = self.request(&client, reqwest::Method::GET, from);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.unreachable(from, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(from, status));
        }
        let resumed = have > 0 && status == StatusCode::PARTIAL_CONTENT;
        let mut file = if resumed {
            // Hash what is already there, then append.
            let mut existing = tokio::fs::File::open(partial)
                .await
                .map_err(|e| fail(format!("cannot read {}: {e}", partial.display())))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = existing
                    .read(&mut buf)
                    .await
                    .map_err(|e| fail(format!("cannot read {}: {e}", partial.display())))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            self.say(
                format!("resuming at {have} bytes"),
                Some(have),
                expected.size,
            )
            .await;
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(partial)
                .await
        } else {
            have = 0;
            tokio::fs::File::create(partial).await
        }
        .map_err(|e| fail(format!("cannot write {}: {e}", partial.display())))?;
        let total = expected
            .size
            .or_else(|| response.content_length().map(|n| n + have));
        let status_line = format!("pulling {}", self.target.file_name());
        self.say(status_line.clone(), Some(have), total).await;
        let mut body = response.bytes_stream();
        let mut last = Instant::now();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                fail(format!(
                    "the download of {url} broke after {have} bytes: {e}; pull again to resume"
                ))
            })?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| fail(format!("cannot write {}: {e}", partial.display())))?;
            have += chunk.len() as u64;
            if last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                if self.progress.is_closed() {
                    // Nobody listens: stop, keeping the partial file to resume.
                    let _ = file.flush().await;
                    return Err(ProviderError::Cancelled);
                }
                self.say(status_line.clone(), Some(have), total).await;
            }
        }
        file.flush()
            .await
            .map_err(|e| fail(format!("cannot write {}: {e}", partial.display())))?;
        self.say(status_line, Some(have), total).await;
        if let Some(size) = total {
            if have != size {
                return Err(fail(format!(
                    "the download of {url} ended at {have} of {size} bytes; pull again to resume"
                )));
            }
        }
        Ok(hasher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_paths_parse_with_an_optional_revision() {
        let f = HubFile::parse("TheOrg/Some-Model-GGUF/sub/model.Q4_1.gguf").unwrap();
        assert_eq!(f.repo, "TheOrg/Some-Model-GGUF");
        assert_eq!(f.revision, "main");
        assert_eq!(f.file_name(), "model.Q4_1.gguf");
        assert_eq!(
            f.url("http://hub/"),
            "http://hub/TheOrg/Some-Model-GGUF/resolve/main/sub/model.Q4_1.gguf"
        );
        let r = HubFile::parse("o/r:v1.2/m.gguf").unwrap();
        assert_eq!((r.repo.as_str(), r.revision.as_str()), ("o/r", "v1.2"));
        assert!(HubFile::parse("o/r/readme.md").is_none());
        assert!(HubFile::parse("o/m.gguf").is_none());
        assert!(HubFile::parse("o/r/../../etc.gguf").is_none());
    }
}
