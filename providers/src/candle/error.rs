//! What can go wrong loading or running an embedded model: a leaf that
//! the forward pass and the quantized kernels both report through.

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
    Kv(#[from] super::model::KvError),
    /// A model this forward pass does not implement (Candle's may).
    #[error("{0}")]
    Unsupported(String),
}
