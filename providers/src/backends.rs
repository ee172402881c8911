//! Backends by name, as the configuration lists them.

use std::path::Path;
use std::sync::Arc;

use crate::candle::CandleProvider;
use crate::config::ModelsConfig;
use crate::ollama::OllamaProvider;
use crate::{Provider, ProviderError};

/// The backend names this build knows.
pub const KNOWN: [&str; 2] = [crate::candle::BACKEND, crate::ollama::BACKEND];

/// Sets up the backend called `name`.
pub fn build(
    name: &str,
    config: &ModelsConfig,
    model_dir: &Path,
) -> Result<Arc<dyn Provider>, ProviderError> {
    match name {
        crate::candle::BACKEND => Ok(Arc::new(CandleProvider::with_config(
            model_dir,
            &config.candle,
        )?)),
        crate::ollama::BACKEND => Ok(Arc::new(OllamaProvider::new(
            config.ollama.host.as_deref(),
        )?)),
        other => Err(ProviderError::Unsupported(format!(
            "unknown backend `{other}`; known: {}",
            KNOWN.join(", ")
        ))),
    }
}
