//! Jupyter's directories, found the way `jupyter_core` finds them, and the
//! connection files in them.

use std::path::{Path, PathBuf};

use crate::connection::ConnectionInfo;

/// The user's Jupyter data directory (`jupyter --data-dir`).
pub fn jupyter_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("JUPYTER_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if cfg!(target_os = "macos") {
        if let Some(home) = dirs::home_dir() {
            return home.join("Library").join("Jupyter");
        }
    }
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from(".local/share"))
        .join("jupyter")
}

/// Where connection files live (`jupyter --runtime-dir`).
pub fn jupyter_runtime_dir() -> PathBuf {
    match std::env::var_os("JUPYTER_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => jupyter_data_dir().join("runtime"),
    }
}

/// The most recently modified connection file in `dir` that belongs to a
/// kernel named `kernel_name` (by its `kernel_name` field, or by a
/// `kernel-<kernel_name>-*.json` file name).
pub fn newest_connection_file(dir: &Path, kernel_name: &str) -> Option<PathBuf> {
    let prefix = format!("kernel-{kernel_name}-");
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_name()?.to_str()?.to_owned();
            if !(name.starts_with("kernel-") && name.ends_with(".json")) {
                return None;
            }
            let ours = name.starts_with(&prefix)
                || ConnectionInfo::read(&path)
                    .ok()
                    .and_then(|info| info.kernel_name)
                    .is_some_and(|n| n == kernel_name);
            if !ours {
                return None;
            }
            let modified = entry.metadata().ok()?.modified().ok()?;
            Some((modified, path))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, path)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_connection_file_picks_ours_by_name_or_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut ours = ConnectionInfo::new_random("127.0.0.1", "skillkernel");
        ours.write(&dir.path().join("kernel-1234.json")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        ours.kernel_name = Some("python3".into());
        ours.write(&dir.path().join("kernel-5678.json")).unwrap();
        assert_eq!(
            newest_connection_file(dir.path(), "skillkernel").unwrap(),
            dir.path().join("kernel-1234.json")
        );
        assert!(newest_connection_file(dir.path(), "nothing").is_none());
    }
}
