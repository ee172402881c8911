//! Kernelspec JSON (`kernel.json`), what `jupyter kernelspec list` reads.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `kernel.json` of a kernelspec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelSpec {
    pub argv: Vec<String>,
    pub display_name: String,
    pub language: String,
    /// `message`: Jupyter sends `interrupt_request` on control rather than
    /// SIGINT, which also works when the kernel is on another host.
    pub interrupt_mode: String,
    #[serde(default)]
    pub env: Map<String, Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl KernelSpec {
    /// The skillkernel spec that starts `executable` in the foreground.
    pub fn for_executable(executable: &str, display_name: &str) -> Self {
        KernelSpec {
            argv: vec![
                executable.to_owned(),
                "start".to_owned(),
                "-f".to_owned(),
                "{connection_file}".to_owned(),
            ],
            display_name: display_name.to_owned(),
            language: "skill".to_owned(),
            interrupt_mode: "message".to_owned(),
            env: Map::new(),
            metadata: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_takes_the_connection_file_placeholder() {
        let spec = KernelSpec::for_executable("/usr/bin/skillkernel", "Skill Kernel");
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["argv"][3], "{connection_file}");
        assert_eq!(json["interrupt_mode"], "message");
    }
}
