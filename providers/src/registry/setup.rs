//! Building a registry from the `[models]` configuration, and again on a
//! reload, keeping what did not change.

use std::sync::Arc;

use super::Registry;
use crate::cache::ResponseCache;
use crate::config::ModelsConfig;
use crate::Provider;

/// What [`Registry::from_config`] could not set up, for the operator's log.
pub type SetupNotes = Vec<String>;

/// The backends `config` plans; a configuration the daemon would have
/// refused falls back to the built-ins, with a note.
fn plans(config: &ModelsConfig, notes: &mut SetupNotes) -> Vec<crate::config::BackendPlan> {
    config.plan().unwrap_or_else(|e| {
        notes.push(format!("[models]: {e}; using the built-in backends"));
        ModelsConfig::default().plan().unwrap_or_default()
    })
}

impl Registry {
    /// Builds the backends `config` names, in its order, over `model_dir`
    /// for the embedded backend, with the response cache in `cache_dir`
    /// when enabled. A backend or cache that cannot be set up is left out
    /// and explained in the notes; the kernel still serves without it.
    pub fn from_config(
        config: &ModelsConfig,
        model_dir: &std::path::Path,
        cache_dir: Option<&std::path::Path>,
    ) -> (Registry, SetupNotes) {
        let mut notes = Vec::new();
        let mut backends: Vec<Arc<dyn Provider>> = Vec::new();
        for plan in plans(config, &mut notes) {
            let mut note = |n: String| notes.push(n);
            match crate::backends::build(&plan, config, model_dir, &mut note) {
                Ok(provider) => backends.push(provider),
                Err(e) => notes.push(format!("backend `{}` left out: {e}", plan.name)),
            }
        }
        let mut registry = Registry::new(backends, config.clone());
        match (config.cache.enabled, cache_dir) {
            (true, Some(dir)) => {
                let ttl = std::time::Duration::from_secs(config.cache.ttl_secs);
                match ResponseCache::open(dir, ttl) {
                    Ok(cache) => {
                        let purged = cache.purge_expired();
                        if purged > 0 {
                            tracing::info!(purged, "expired cached answers removed");
                        }
                        registry = registry.with_cache(cache);
                    }
                    Err(e) => notes.push(format!(
                        "response cache off: {e} (another kernel may be using this state directory)"
                    )),
                }
            }
            (true, None) => notes.push("response cache off: no state directory".into()),
            (false, _) => {}
        }
        (registry, notes)
    }

    /// The registry a reloaded `config` asks for. Backends whose settings
    /// did not change are kept as they are (a loaded model stays loaded);
    /// the others are built anew. The response cache is carried over with
    /// the new TTL, or dropped when the new config turns it off — its store
    /// is already open in this process and cannot be opened twice.
    pub fn reconfigured(
        &self,
        config: &ModelsConfig,
        model_dir: &std::path::Path,
        old_model_dir: &std::path::Path,
    ) -> (Registry, SetupNotes) {
        let mut notes = Vec::new();
        let mut backends: Vec<Arc<dyn Provider>> = Vec::new();
        let old_plans = self.config.plan().unwrap_or_default();
        for plan in plans(config, &mut notes) {
            let old_plan = old_plans.iter().find(|p| p.name == plan.name);
            let unchanged = crate::backends::unchanged(
                &plan,
                old_plan,
                config,
                &self.config,
                model_dir == old_model_dir,
            );
            let kept = self.backends.iter().find(|p| p.backend() == plan.name);
            match kept {
                Some(provider) if unchanged => backends.push(provider.clone()),
                _ => {
                    let mut note = |n: String| notes.push(n);
                    match crate::backends::build(&plan, config, model_dir, &mut note) {
                        Ok(provider) => backends.push(provider),
                        Err(e) => notes.push(format!("backend `{}` left out: {e}", plan.name)),
                    }
                }
            }
        }
        let mut registry = Registry::new(backends, config.clone()).with_calls(self.calls.clone());
        if let Some(ledger) = &self.usage {
            registry = registry.with_usage(Arc::clone(ledger));
        }
        match (&self.cache, config.cache.enabled) {
            (Some(cache), true) => {
                let ttl = std::time::Duration::from_secs(config.cache.ttl_secs);
                registry = registry.with_cache(cache.with_ttl(ttl));
            }
            (None, true) => {
                notes.push("response cache stays off until a restart (it was not open)".into())
            }
            (_, false) => {}
        }
        (registry, notes)
    }
}
