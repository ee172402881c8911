//! What can go wrong loading or running an embedded model: a leaf that
//! the forward pass and the quantized kernels both report through.

/// The GGUF tensor types the engine runs (`quant::matrix`), for error
/// messages.
pub const SUPPORTED_TYPES: &str = "F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K";

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("cannot read the weights: {0}")]
    Io(#[from] std::io::Error),
    #[error("tensor `{0}` is missing")]
    Missing(String),
    #[error("metadata `{0}` is missing or not a number")]
    Metadata(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A model this forward pass does not implement (Candle's may).
    #[error("{0}")]
    Unsupported(String),
    /// A weight type without a kernel here.
    #[error(
        "tensor `{tensor}` is stored as {dtype}, which the embedded engine does not run; it runs {}",
        SUPPORTED_TYPES
    )]
    UnsupportedType { tensor: String, dtype: String },
}

/// Why the cache could not take more positions.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("the context window of {capacity} positions is full")]
    Full { capacity: usize },
    #[error("cannot reserve memory for the KV cache: {0}")]
    Reserve(std::io::Error),
}
