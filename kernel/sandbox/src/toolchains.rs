//! Toolchains installed in the home directory — pyenv, conda, virtualenvs,
//! `~/.local`, `~/.cargo` and rustup, nvm, uv — found through the daemon's
//! `PATH`, so that `python3` from a pyenv shim runs in the sandbox as
//! `/usr/bin/python3` does, without the rest of the home directory.
//!
//! Each `PATH` entry under the home directory gives its **install root**:
//! the folder above a `bin/` that holds a virtualenv (`pyvenv.cfg`, whose
//! base interpreter's install comes too) or a conda environment
//! (`conda-meta`, with its conda root's `pkgs`), the root of a version
//! manager whose `shims/` it is (the nearest folder with `versions/`), or
//! else the folder above `bin/` — never the home directory itself or a
//! folder right in it (`~/.local`, `~/.cargo`, `~/go`: they hold more than
//! code), where only the entry is granted, with `~/.local/lib` beside
//! `~/.local/bin` and `~/.rustup` beside `~/.cargo/bin`. Links in an entry
//! (pipx, uv tools) are followed to their own install roots. A root that
//! would contain a secret (`~/.ssh`, …: [`SECRETS`]) is never granted.
//!
//! Entries that are relative, missing or writable by others are skipped
//! with a warning: they could make the sandbox wider than meant.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the home directory holds that no grant may include.
pub const SECRETS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".config/gcloud",
    ".netrc",
    ".git-credentials",
    ".local/share/keyrings",
    ".password-store",
    ".pypirc",
    ".npmrc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
];

/// The read grants for the toolchains on `path_var` under `home`, and a
/// warning for each entry passed over.
pub fn roots(path_var: &str, home: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let mut found = Found::default();
    if home.parent().is_none() || !home.is_absolute() {
        return (Vec::new(), Vec::new());
    }
    for entry in std::env::split_paths(path_var) {
        if entry.as_os_str().is_empty() {
            continue;
        }
        if !entry.is_absolute() {
            found.warn(format!(
                "PATH entry {} is relative; the sandbox grants nothing for it",
                entry.display()
            ));
            continue;
        }
        if !entry.starts_with(home) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&entry) else {
            found.warn(format!(
                "PATH entry {} does not exist (or is a link that loops); the sandbox grants nothing for it",
                entry.display()
            ));
            continue;
        };
        if meta.permissions().mode() & 0o002 != 0 {
            found.warn(format!(
                "PATH entry {} may be written by anyone; the sandbox grants nothing for it",
                entry.display()
            ));
            continue;
        }
        found.entry(&entry, home, true);
    }
    (found.roots, found.warnings)
}

#[derive(Default)]
struct Found {
    roots: Vec<PathBuf>,
    warnings: Vec<String>,
}

impl Found {
    fn warn(&mut self, warning: String) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    fn grant(&mut self, dir: &Path, home: &Path) {
        if !dir.is_dir() && !dir.is_file() {
            return;
        }
        if dir == home || dir.parent().is_none() || holds_secret(dir, home) {
            return;
        }
        if !self.roots.iter().any(|r| dir.starts_with(r)) {
            self.roots.retain(|r| !r.starts_with(dir));
            self.roots.push(dir.to_path_buf());
        }
    }

    /// Grants what `entry` (a folder of programs) needs; `follow`: also
    /// the install roots its links lead to.
    fn entry(&mut self, entry: &Path, home: &Path, follow: bool) {
        for root in install_roots(entry, home) {
            self.grant(&root, home);
        }
        if !follow {
            return;
        }
        let Ok(dir) = std::fs::read_dir(entry) else {
            return;
        };
        for file in dir.flatten().take(2000) {
            let path = file.path();
            if !path.is_symlink() {
                continue;
            }
            // Loops and dangling links resolve to nothing.
            let Ok(target) = std::fs::canonicalize(&path) else {
                self.warn(format!(
                    "{} is a link that loops or leads nowhere; the sandbox grants nothing for it",
                    path.display()
                ));
                continue;
            };
            if let Some(folder) = target.parent() {
                if !folder.starts_with(entry) {
                    self.entry(folder, home, false);
                }
            }
        }
    }
}

/// Whether `dir` is, or contains, one of the [`SECRETS`].
fn holds_secret(dir: &Path, home: &Path) -> bool {
    SECRETS.iter().any(|s| {
        let secret = home.join(s);
        secret.starts_with(dir) || dir.starts_with(&secret)
    })
}

/// The install roots of one folder of programs (see the module docs).
fn install_roots(entry: &Path, home: &Path) -> Vec<PathBuf> {
    let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(prefix) = entry.parent() else {
        return Vec::new();
    };
    if name == "shims" {
        // pyenv, rbenv, nodenv: the manager's root holds the versions.
        return match entry
            .ancestors()
            .skip(1)
            .take_while(|a| *a != home)
            .find(|a| a.join("versions").is_dir())
        {
            Some(root) => vec![root.to_path_buf()],
            None => vec![entry.to_path_buf()],
        };
    }
    if !matches!(name, "bin" | "condabin" | ".bin") {
        return vec![entry.to_path_buf()];
    }
    if prefix.join("pyvenv.cfg").is_file() {
        let mut roots = vec![prefix.to_path_buf()];
        roots.extend(venv_base(prefix));
        return roots;
    }
    if prefix.join("conda-meta").is_dir() {
        let mut roots = vec![prefix.to_path_buf()];
        // An environment of `envs/` shares its conda root's `pkgs`.
        if prefix.parent().and_then(Path::file_name) == Some("envs".as_ref()) {
            if let Some(conda) = prefix.parent().and_then(Path::parent) {
                roots.push(conda.join("pkgs"));
            }
        }
        return roots;
    }
    if prefix == home || prefix.parent() == Some(home) {
        let mut roots = vec![entry.to_path_buf()];
        match prefix.file_name().and_then(|n| n.to_str()) {
            Some(".local") => roots.push(prefix.join("lib")),
            Some(".cargo") => roots.push(home.join(".rustup")),
            _ => {}
        }
        return roots;
    }
    vec![prefix.to_path_buf()]
}

/// What running `program` by its path needs to read: the install roots
/// of its folder, as written and with links resolved (a virtualenv's
/// `bin/python` links out of it, its packages stay beside the link), and
/// of the interpreter its `#!` line names — by the same rules as the
/// `PATH` entries above, never a secret.
pub fn program_roots(program: &Path, home: &Path) -> Vec<PathBuf> {
    let mut found = Found::default();
    let interpreter = interpreter_of(program);
    let paths = [Some(program.to_path_buf()), interpreter]
        .into_iter()
        .flatten()
        .flat_map(|p| [std::fs::canonicalize(&p).ok(), Some(p)])
        .flatten();
    for path in paths {
        if let Some(folder) = path.parent() {
            for root in install_roots(folder, home) {
                found.grant(&root, home);
            }
        }
    }
    found.roots
}

/// `name` on the daemon's `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The interpreter a script names on its `#!` line (`#!/usr/bin/env
/// node` looks `node` up on the daemon's `PATH`).
fn interpreter_of(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line);
    let mut words = line.lines().next()?.split_whitespace();
    let first = words.next()?;
    if Path::new(first).file_name().is_some_and(|f| f == "env") {
        return find_on_path(words.find(|w| !w.starts_with('-'))?);
    }
    Some(PathBuf::from(first))
}

/// Where program `argv0` (found as the program's `PATH` would find it)
/// keeps its code, when the policy does not let it read there: the
/// reason a program fails with its own confusing message (Python's "path
/// configuration" dump) rather than "permission denied".
pub fn unreadable_install(argv0: &str, policy: &crate::SandboxPolicy) -> Option<PathBuf> {
    let program = if argv0.contains('/') {
        let path = Path::new(argv0);
        match &policy.workspace {
            Some(workspace) if path.is_relative() => workspace.join(path),
            _ => path.to_path_buf(),
        }
    } else {
        find_on_path(argv0)?
    };
    let readable = |p: &Path| {
        policy
            .read
            .iter()
            .chain(&policy.write)
            .chain(&policy.workspace)
            .any(|r| p.starts_with(r))
    };
    let real = std::fs::canonicalize(&program).ok()?;
    for path in [program, real] {
        let folder = path.parent()?;
        let root = match folder.file_name().and_then(|n| n.to_str()) {
            Some("bin" | "shims" | ".bin") => folder.parent().unwrap_or(folder),
            _ => folder,
        };
        if !readable(&path) || !readable(root) {
            return Some(root.to_path_buf());
        }
    }
    None
}

/// The install of a virtualenv's base interpreter (`home = …/bin` in its
/// `pyvenv.cfg`), wherever it is.
fn venv_base(venv: &Path) -> Option<PathBuf> {
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    let bin = cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "home").then(|| PathBuf::from(value.trim()))
    })?;
    let bin = std::fs::canonicalize(bin).ok()?;
    match bin.file_name().and_then(|n| n.to_str()) {
        Some("bin") => bin.parent().map(Path::to_path_buf),
        _ => Some(bin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(home: &Path, list: &[&str]) {
        for d in list {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
    }

    #[test]
    fn home_toolchains_are_granted_by_their_install_roots_and_never_a_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        dirs(
            &home,
            &[
                ".pyenv/shims",
                ".pyenv/versions/3.12.1/bin",
                ".pyenv/plugins/pyenv-virtualenv/shims",
                "miniconda3/bin",
                "miniconda3/conda-meta",
                "miniconda3/envs/ml/bin",
                "miniconda3/envs/ml/conda-meta",
                "miniconda3/pkgs",
                ".local/bin",
                ".local/lib",
                ".local/share/keyrings",
                ".local/share/uv/tools/ruff/bin",
                ".cargo/bin",
                ".rustup/toolchains",
                ".nvm/versions/node/v20.1.0/bin",
                "projects/app/.venv/bin",
                ".ssh",
                "bin",
            ],
        );
        std::fs::write(
            home.join("projects/app/.venv/pyvenv.cfg"),
            format!(
                "home = {}\n",
                home.join(".pyenv/versions/3.12.1/bin").display()
            ),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            home.join(".local/share/uv/tools/ruff/bin/ruff"),
            home.join(".local/bin/ruff"),
        )
        .unwrap();
        std::fs::write(home.join(".local/share/uv/tools/ruff/bin/ruff"), "").unwrap();
        let entries = [
            ".pyenv/plugins/pyenv-virtualenv/shims",
            ".pyenv/shims",
            "miniconda3/envs/ml/bin",
            "miniconda3/bin",
            ".local/bin",
            ".cargo/bin",
            ".nvm/versions/node/v20.1.0/bin",
            "projects/app/.venv/bin",
            "bin",
        ];
        let path: Vec<PathBuf> = entries
            .iter()
            .map(|e| home.join(e))
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("relative/bin")])
            .collect();
        let path = std::env::join_paths(path).unwrap();
        let (roots, warnings) = roots(path.to_str().unwrap(), &home);
        let home_roots: Vec<String> = roots
            .iter()
            .map(|r| r.strip_prefix(&home).unwrap().display().to_string())
            .collect();
        for wanted in [
            ".pyenv",
            ".local/bin",
            ".local/lib",
            ".local/share/uv/tools/ruff",
            ".cargo/bin",
            ".rustup",
            ".nvm/versions/node/v20.1.0",
            "projects/app/.venv",
            "bin",
        ] {
            assert!(
                home_roots.iter().any(|r| r == wanted),
                "{wanted} in {home_roots:?}"
            );
        }
        // `miniconda3/bin` is a conda root's own bin: the whole install.
        assert!(
            home_roots.iter().any(|r| r == "miniconda3"),
            "{home_roots:?}"
        );
        for never in ["", ".local", ".local/share", ".cargo", ".ssh"] {
            assert!(
                !home_roots.iter().any(|r| r == never),
                "{never:?} in {home_roots:?}"
            );
        }
        assert!(roots.iter().all(|r| !holds_secret(r, &home)));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("relative"));

        // A conda environment alone: itself and its root's packages.
        let (roots, _) = super::roots(home.join("miniconda3/envs/ml/bin").to_str().unwrap(), &home);
        assert_eq!(
            roots,
            [
                home.join("miniconda3/envs/ml"),
                home.join("miniconda3/pkgs")
            ]
        );
    }

    #[test]
    fn a_programs_roots_are_its_install_and_its_interpreters_never_wider() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        dirs(
            &home,
            &[".cargo/bin", "py/versions/3.11/bin", "tools/x/bin"],
        );
        let python = home.join("py/versions/3.11/bin/python3");
        std::fs::write(&python, "").unwrap();
        let script = home.join("tools/x/bin/run");
        std::fs::write(&script, format!("#!{}\nimport x\n", python.display())).unwrap();
        let roots = program_roots(&script, &home);
        assert!(roots.contains(&home.join("tools/x")), "{roots:?}");
        assert!(roots.contains(&home.join("py/versions/3.11")), "{roots:?}");
        // A program in ~/.cargo/bin may read its bin/, not ~/.cargo.
        let server = home.join(".cargo/bin/some-server");
        std::fs::write(&server, "").unwrap();
        let roots = program_roots(&server, &home);
        assert!(roots.contains(&home.join(".cargo/bin")), "{roots:?}");
        assert!(!roots.contains(&home.join(".cargo")), "{roots:?}");
        assert!(!roots.contains(&home), "{roots:?}");
        std::fs::write(&script, "#!/usr/bin/env -S sh -e\n").unwrap();
        assert_eq!(interpreter_of(&script), find_on_path("sh"));
        assert!(interpreter_of(&script).is_some());
    }

    #[test]
    fn an_entry_anyone_may_write_is_passed_over() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        dirs(&home, &["tools/bin"]);
        std::fs::set_permissions(
            home.join("tools/bin"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let (roots, warnings) = roots(home.join("tools/bin").to_str().unwrap(), &home);
        assert!(roots.is_empty(), "{roots:?}");
        assert!(warnings[0].contains("anyone"), "{warnings:?}");
    }

    #[test]
    fn a_missing_entry_and_a_shim_that_loops_are_named_and_grant_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        dirs(&home, &[".tool/shims", ".tool/versions/1/bin"]);
        let shims = home.join(".tool/shims");
        std::os::unix::fs::symlink(shims.join("b"), shims.join("a")).unwrap();
        std::os::unix::fs::symlink(shims.join("a"), shims.join("b")).unwrap();
        let path = std::env::join_paths([shims.clone(), home.join("gone/bin")]).unwrap();
        let (roots, warnings) = roots(path.to_str().unwrap(), &home);
        // The control: the manager's root is still granted for its shims.
        assert_eq!(roots, vec![home.join(".tool")], "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("loops") && w.contains("shims/a")),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("gone/bin") && w.contains("does not exist")),
            "{warnings:?}"
        );
    }
}
