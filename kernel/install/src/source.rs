//! What `skill install SOURCE` names: a git repository, an archive, or a
//! local folder.
//!
//! | SOURCE | kind |
//! |---|---|
//! | `git+URL`, a URL or path ending in `.git`, `git@host:repo`, `ssh://…`, a `file://` URL or path of a git repository | git |
//! | an `http(s)://` or `file://` URL, or a path, ending in `.tar.gz`, `.tgz` or `.zip` | archive |
//! | any other local folder | folder |
//!
//! A git source takes an optional ref (branch, tag or commit) and a
//! subfolder; `URL@REF` is not parsed (a URL may contain `@`): they come as
//! their own options.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::InstallError;

/// Where a skill comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Git {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        git_ref: Option<String>,
    },
    Archive {
        /// An `http(s)://` or `file://` URL, or an absolute path.
        location: String,
    },
    Folder {
        path: PathBuf,
    },
}

impl Source {
    /// `text` as a source; `git_ref` only applies to git.
    /// `text` as a source; a relative path is taken inside `base` (the
    /// kernel's working directory).
    pub fn parse_in(
        text: &str,
        git_ref: Option<&str>,
        base: &Path,
    ) -> Result<Source, InstallError> {
        let t = text.trim();
        let relative = !t.is_empty()
            && !t.contains("://")
            && !t.starts_with('/')
            && !t.contains('@')
            && !t.starts_with("git+");
        if relative {
            return Source::parse(&base.join(t).display().to_string(), git_ref);
        }
        Source::parse(text, git_ref)
    }

    pub fn parse(text: &str, git_ref: Option<&str>) -> Result<Source, InstallError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InstallError::bad_source(text, "the source is empty"));
        }
        if let Some(r) = git_ref {
            if r.is_empty() || r.starts_with('-') || r.contains(char::is_whitespace) {
                return Err(InstallError::bad_source(
                    text,
                    format!("`{r}` is not a branch, tag or commit name"),
                ));
            }
        }
        if text.starts_with('-') {
            return Err(InstallError::bad_source(
                text,
                "a source cannot start with `-`",
            ));
        }
        if let Some((_, rest)) = text.split_once("://") {
            let authority = rest.split('/').next().unwrap_or("");
            let password = authority
                .rsplit_once('@')
                .is_some_and(|(user, _)| user.contains(':'));
            if password {
                return Err(InstallError::bad_source(
                    "the URL",
                    "it carries a password, which would be kept in the lock file and the logs; use a git credential helper instead",
                ));
            }
        }
        let git = |url: &str| Source::Git {
            url: url.to_owned(),
            git_ref: git_ref.map(str::to_owned),
        };
        if let Some(url) = text.strip_prefix("git+") {
            return Ok(git(url));
        }
        let lower = text.to_ascii_lowercase();
        let archive = [".tar.gz", ".tgz", ".zip"]
            .iter()
            .any(|ext| lower.ends_with(ext));
        // `….git`, `ssh://…`, scp-like `git@host:repo`.
        let git_shaped = lower.ends_with(".git")
            || lower.ends_with(".git/")
            || lower.starts_with("ssh://")
            || (text.contains('@') && text.contains(':') && !text.contains("://"));
        let source = if git_shaped {
            git(text)
        } else if archive && (lower.starts_with("http://") || lower.starts_with("https://")) {
            Source::Archive {
                location: text.to_owned(),
            }
        } else if let Some(path) = text.strip_prefix("file://") {
            let path = PathBuf::from(path);
            if archive {
                Source::Archive {
                    location: path.display().to_string(),
                }
            } else if is_git_repository(&path) {
                git(text)
            } else {
                return Err(InstallError::bad_source(
                    text,
                    "a file:// URL must name a git repository or a .tar.gz/.tgz/.zip archive",
                ));
            }
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            // A web URL that is not an archive: a git remote (GitHub-like).
            git(text)
        } else {
            let path = std::path::absolute(text).unwrap_or_else(|_| PathBuf::from(text));
            if !path.exists() {
                return Err(InstallError::bad_source(
                    text,
                    "no such file or folder (a URL needs its scheme: https://, file://, git+…)",
                ));
            }
            if archive {
                Source::Archive {
                    location: path.display().to_string(),
                }
            } else if path.is_dir() && is_git_repository(&path) && git_ref.is_some() {
                git(&path.display().to_string())
            } else if path.is_dir() {
                Source::Folder { path }
            } else {
                return Err(InstallError::bad_source(
                    text,
                    "a file source must be a .tar.gz, .tgz or .zip archive",
                ));
            }
        };
        if git_ref.is_some() && !matches!(source, Source::Git { .. }) {
            return Err(InstallError::bad_source(
                text,
                "`--ref` only applies to a git source",
            ));
        }
        Ok(source)
    }

    /// The source as written back (the lock file, messages).
    pub fn display(&self) -> String {
        match self {
            Source::Git { url, git_ref } => match git_ref {
                Some(r) => format!("{url} (ref {r})"),
                None => url.clone(),
            },
            Source::Archive { location } => location.clone(),
            Source::Folder { path } => path.display().to_string(),
        }
    }
}

/// A working tree with `.git`, or a bare repository.
fn is_git_repository(path: &Path) -> bool {
    path.join(".git").exists() || (path.join("HEAD").is_file() && path.join("objects").is_dir())
}

/// `subdir` as a relative path that stays inside what was fetched.
pub fn checked_subdir(subdir: &str) -> Result<PathBuf, InstallError> {
    let path = Path::new(subdir.trim_matches('/'));
    let escapes = path.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if escapes {
        return Err(InstallError::bad_source(
            subdir,
            "the subfolder must be a relative path inside the source, without `..`",
        ));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart_by_their_shape() {
        let t = tempfile::tempdir().unwrap();
        let bare = t.path().join("repo.git");
        std::fs::create_dir_all(bare.join("objects")).unwrap();
        std::fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let folder = t.path().join("skill");
        std::fs::create_dir_all(&folder).unwrap();
        let url = format!("file://{}", bare.display());
        assert!(
            matches!(Source::parse(&url, Some("v1")).unwrap(), Source::Git { git_ref: Some(r), .. } if r == "v1")
        );
        assert!(matches!(
            Source::parse("https://example.org/s.tar.gz", None).unwrap(),
            Source::Archive { .. }
        ));
        assert!(matches!(
            Source::parse("https://github.com/a/b", None).unwrap(),
            Source::Git { .. }
        ));
        assert!(matches!(
            Source::parse("git@github.com:a/b", None).unwrap(),
            Source::Git { .. }
        ));
        assert!(matches!(
            Source::parse(folder.to_str().unwrap(), None).unwrap(),
            Source::Folder { .. }
        ));
        for secret in ["https://ana:tok@host/r.git", "git+https://ana:tok@host/r"] {
            let e = Source::parse(secret, None).unwrap_err().to_string();
            assert!(e.contains("password") && !e.contains("tok"), "{e}");
        }
        let missing = Source::parse("/nonexistent/skill", None).unwrap_err();
        assert!(
            missing.to_string().contains("no such file or folder"),
            "{missing}"
        );
        let wrong = Source::parse(folder.to_str().unwrap(), Some("main")).unwrap_err();
        assert!(
            wrong.to_string().contains("`--ref` only applies"),
            "{wrong}"
        );
        assert!(checked_subdir("../x").is_err());
        assert!(
            checked_subdir("/etc").is_ok(),
            "leading slashes are trimmed"
        );
        assert_eq!(
            checked_subdir("skills/fetch/").unwrap(),
            PathBuf::from("skills/fetch")
        );
    }
}
