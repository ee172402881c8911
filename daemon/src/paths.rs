//! Jupyter's directories, found the way `jupyter_core` finds them.

use std::path::PathBuf;

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
