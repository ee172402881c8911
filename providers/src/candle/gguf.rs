//! Reading a GGUF file's header: architecture, sizes, tokenizer and chat
//! template metadata.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};

use crate::ProviderError;

/// The model families this backend runs, told apart by
/// `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama and its descendants: SmolLM2, TinyLlama, Llama 3.
    Llama,
    Qwen2,
    Qwen3,
}

impl Architecture {
    /// The architecture for a `general.architecture` value.
    pub fn from_gguf(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            "qwen3" => Some(Architecture::Qwen3),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
        }
    }
}

/// A parsed GGUF header with the file it came from.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    pub architecture: Architecture,
}

/// Checks that the file holds every tensor its header promises, so a
/// half-downloaded model is refused up front rather than mid-load.
fn check_complete(path: &Path, content: &Content) -> Result<(), ProviderError> {
    let len = std::fs::metadata(path)
        .map_err(|e| invalid(path, format!("cannot stat: {e}")))?
        .len();
    let needed = content
        .tensor_infos
        .values()
        .map(|t| {
            let dtype = t.ggml_dtype;
            let bytes = t.shape.elem_count() / dtype.block_size() * dtype.type_size();
            t.offset + bytes as u64
        })
        .max()
        .unwrap_or(0)
        + content.tensor_data_offset;
    if len < needed {
        return Err(invalid(
            path,
            format!("it is truncated ({len} of {needed} bytes); re-download or re-import it"),
        ));
    }
    Ok(())
}

/// Why a file is not a model this backend can run.
pub(crate) fn invalid(path: &Path, why: impl std::fmt::Display) -> ProviderError {
    ProviderError::InvalidModel {
        path: path.to_owned(),
        reason: why.to_string(),
    }
}

impl GgufFile {
    /// Reads the header (metadata and tensor index, not the weights).
    pub fn open(path: &Path) -> Result<Self, ProviderError> {
        let file = File::open(path).map_err(|e| invalid(path, format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| {
            invalid(
                path,
                format!("not a readable GGUF file ({e}); re-download or re-import it"),
            )
        })?;
        let arch_name = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| invalid(path, "no `general.architecture` in its metadata"))?;
        let architecture = Architecture::from_gguf(&arch_name).ok_or_else(|| {
            invalid(
                path,
                format!(
                    "architecture `{arch_name}` is not supported (supported: llama, qwen2, qwen3)"
                ),
            )
        })?;
        check_complete(path, &content)?;
        Ok(GgufFile {
            path: path.to_owned(),
            content,
            architecture,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
    }

    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key).and_then(|v| v.to_u32().ok())
    }

    /// `<arch>.<key>`, e.g. `llama.context_length`.
    pub fn arch_u32(&self, key: &str) -> Option<u32> {
        self.get_u32(&format!("{}.{key}", self.architecture.as_str()))
    }

    /// The context window in tokens.
    pub fn context_length(&self) -> Option<u32> {
        self.arch_u32("context_length")
    }

    /// The quantization of the bulk of the weights, e.g. `Q4_1`.
    pub fn quantization(&self) -> Option<String> {
        let mut counts = std::collections::HashMap::new();
        for info in self.content.tensor_infos.values() {
            *counts
                .entry(format!("{:?}", info.ggml_dtype))
                .or_insert(0usize) += 1;
        }
        counts
            .into_iter()
            .filter(|(name, _)| name != "F32")
            .max_by_key(|(_, n)| *n)
            .map(|(name, _)| name)
    }
}
