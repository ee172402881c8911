//! `kv_cache` in `[models.candle]`: how the embedded engine stores its KV
//! cache.

use std::fmt;
use std::str::FromStr;

/// How the KV cache stores keys and values (`kv_cache` in
/// `[models.candle]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum KvType {
    F32,
    /// The default, as llama.cpp's and Ollama's: half of f32's memory, and
    /// greedy answers as f32 gives them.
    #[default]
    F16,
    /// 8-bit blocks with an f16 scale: a bit over a quarter of f32's
    /// memory; may tip a near tie in greedy decoding. Needs a head width
    /// that is a multiple of 32 (f16 is used otherwise).
    Q8_0,
}

impl KvType {
    pub fn as_str(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes per stored value (Q8_0: its byte plus its share of the scale).
    pub fn bytes_per_value(self) -> f64 {
        match self {
            KvType::F32 => 4.0,
            KvType::F16 => 2.0,
            KvType::Q8_0 => 1.0 + 2.0 / 32.0,
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<KvType> for &'static str {
    fn from(kind: KvType) -> &'static str {
        kind.as_str()
    }
}

impl TryFrom<String> for KvType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "q8_0" | "q8" => Ok(KvType::Q8_0),
            other => Err(format!("`{other}` is not a KV cache type (f32, f16, q8_0)")),
        }
    }
}
