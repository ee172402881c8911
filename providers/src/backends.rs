//! Backends by name, as the configuration plans them.

use std::path::Path;
use std::sync::Arc;

use crate::candle::CandleProvider;
use crate::config::{BackendKind, BackendPlan, ModelsConfig};
use crate::http::RemoteProvider;
use crate::ollama::OllamaProvider;
use crate::{Provider, ProviderError};

/// Sets up the backend `plan` describes. A remote backend whose API key
/// variable is unset is still set up (it reports the variable at every
/// use); `note` gets a line for the operator's log.
pub fn build(
    plan: &BackendPlan,
    config: &ModelsConfig,
    model_dir: &Path,
    note: &mut dyn FnMut(String),
) -> Result<Arc<dyn Provider>, ProviderError> {
    match plan.config.kind {
        BackendKind::Candle => Ok(Arc::new(CandleProvider::with_config(
            model_dir,
            &config.candle,
        )?)),
        BackendKind::Ollama => {
            let host = plan
                .config
                .urls
                .first()
                .map(String::as_str)
                .or(config.ollama.host.as_deref());
            Ok(Arc::new(OllamaProvider::new(host)?.named(&plan.name)))
        }
        BackendKind::Openai | BackendKind::Anthropic => {
            let provider = RemoteProvider::new(&plan.name, &plan.config)?;
            if let Some(var) = provider.missing_key() {
                note(format!(
                    "backend `{}`: the API key variable ${var} is not set; its requests fail until it is",
                    plan.name
                ));
            }
            Ok(Arc::new(provider))
        }
    }
}

/// Whether the backend `plan` describes can be kept from `old` as it is:
/// its own settings and the sections it reads did not change.
pub fn unchanged(
    plan: &BackendPlan,
    old_plan: Option<&BackendPlan>,
    config: &ModelsConfig,
    old: &ModelsConfig,
    same_model_dir: bool,
) -> bool {
    if old_plan != Some(plan) {
        return false;
    }
    match plan.config.kind {
        BackendKind::Candle => config.candle == old.candle && same_model_dir,
        BackendKind::Ollama => config.ollama == old.ollama,
        BackendKind::Openai | BackendKind::Anthropic => true,
    }
}
