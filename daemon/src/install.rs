//! `skillkernel install`: the kernelspec Jupyter front ends start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use skillkernel_protocol::KernelSpec;
use thiserror::Error;

use crate::cli::InstallArgs;
use skillkernel_protocol::paths;

/// The kernelspec's directory name, what `--kernel` takes.
pub const KERNEL_NAME: &str = "skillkernel";

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("cannot find this executable's path: {0}")]
    Executable(std::io::Error),
    #[error(
        "no Python environment is active for --sys-prefix: set VIRTUAL_ENV or CONDA_PREFIX, \
         or have `python3` on PATH"
    )]
    NoSysPrefix,
    #[error("cannot write the kernelspec to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the kernelspec goes.
fn kernels_dir(args: &InstallArgs) -> Result<PathBuf, InstallError> {
    if let Some(prefix) = &args.prefix {
        return Ok(prefix.join("share/jupyter/kernels"));
    }
    if args.sys_prefix {
        return Ok(sys_prefix()?.join("share/jupyter/kernels"));
    }
    Ok(paths::jupyter_data_dir().join("kernels"))
}

/// The active Python environment's `sys.prefix`.
fn sys_prefix() -> Result<PathBuf, InstallError> {
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(p) = std::env::var_os(var) {
            return Ok(PathBuf::from(p));
        }
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .map_err(|_| InstallError::NoSysPrefix)?;
    let prefix = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || prefix.is_empty() {
        return Err(InstallError::NoSysPrefix);
    }
    Ok(PathBuf::from(prefix))
}

/// Writes `kernel.json` for `executable` into `dir`.
pub fn write_kernelspec(dir: &Path, executable: &str) -> Result<PathBuf, InstallError> {
    let err = |source| InstallError::Write {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let spec = KernelSpec::for_executable(executable, "Skill Kernel");
    let text = serde_json::to_string_pretty(&spec).map_err(|e| err(e.into()))?;
    let file = dir.join("kernel.json");
    std::fs::write(&file, text + "\n").map_err(err)?;
    Ok(file)
}

pub fn run(args: InstallArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe().map_err(InstallError::Executable)?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let dir = kernels_dir(&args)?.join(KERNEL_NAME);
    let file = write_kernelspec(&dir, &exe.to_string_lossy())?;
    println!("Installed kernelspec {KERNEL_NAME} in {}", dir.display());
    println!("  {}", file.display());
    println!("Start it with: jupyter console --kernel {KERNEL_NAME}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernelspec_names_the_executable_and_connection_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_kernelspec(&dir.path().join(KERNEL_NAME), "/opt/bin/skillkernel").unwrap();
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(spec["argv"][0], "/opt/bin/skillkernel");
        assert_eq!(spec["argv"][3], "{connection_file}");
        assert_eq!(spec["language"], "skill");
    }
}
