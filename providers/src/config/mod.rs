//! The `[models]` part of skillkernel's configuration: which backends run,
//! in which order, the routing profiles, the response cache.
//!
//! Every field has a default, so an empty file (or none) gives the
//! embedded backend with the default model, Ollama at its usual address as
//! a second choice, and a one-day cache for deterministic answers. The
//! daemon reads this from TOML; see `docs/operations.md` for a full file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::GenerationOptions;

mod backends;
mod kv_type;
mod usage;

pub use backends::{
    BackendConfig, BackendKind, BackendPlan, BackendsSection, DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
};
pub use kv_type::KvType;
pub use usage::{price_of, Budgets, OnExceeded, Price};

/// The routing profiles every configuration has, cheapest first.
pub const PROFILES: [&str; 3] = ["cheap", "balanced", "premium"];

/// Model settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Where the embedded backend keeps its GGUF files.
    pub dir: Option<PathBuf>,
    /// What prompt cells start with: a model, `name@backend`, or a profile.
    pub default: String,
    /// The system message opening every conversation; empty for none.
    pub system_prompt: String,
    /// The backends: the built-ins' names in order (`["candle",
    /// "ollama"]`), or `[models.backends.NAME]` tables.
    pub backends: BackendsSection,
    /// The order bare model names are looked for in, with named backends;
    /// empty: `candle`, `ollama`, then the named ones by name.
    pub order: Vec<String>,
    /// Sampling and length settings for prompt cells.
    pub generation: GenerationConfig,
    pub candle: CandleConfig,
    pub ollama: OllamaConfig,
    /// Profile name → model specifiers tried in order.
    pub profiles: BTreeMap<String, Vec<String>>,
    pub cache: CacheConfig,
    /// Model (`name` or `name@backend`) → price per million tokens.
    pub prices: BTreeMap<String, Price>,
    /// Daily limits on what priced models may cost.
    pub budgets: Budgets,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: None,
            default: "smollm2-135m".into(),
            system_prompt: "You are a helpful assistant.".into(),
            backends: BackendsSection::default(),
            order: Vec::new(),
            generation: GenerationConfig::default(),
            candle: CandleConfig::default(),
            ollama: OllamaConfig::default(),
            profiles: BTreeMap::new(),
            cache: CacheConfig::default(),
            prices: BTreeMap::new(),
            budgets: Budgets::default(),
        }
    }
}

/// Sampling and length settings (see [`GenerationOptions`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    /// 1.0 turns the penalty off.
    pub repeat_penalty: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// Stop an answer whose text falls into a loop (`finish_reason`
    /// `repetition`); see `repetition.rs`.
    pub stop_loops: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_tokens: 512,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repeat_penalty: 1.2,
            seed: None,
            stop: Vec::new(),
            stop_loops: true,
        }
    }
}

impl GenerationConfig {
    pub fn options(&self) -> GenerationOptions {
        GenerationOptions {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repeat_penalty: Some(self.repeat_penalty).filter(|p| (*p - 1.0).abs() > f32::EPSILON),
            seed: self.seed,
            stop: self.stop.clone(),
        }
    }
}

/// The embedded backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CandleConfig {
    /// Inference threads; 0 means one per core.
    pub threads: usize,
    /// Base URL of the Hugging Face-style hub `pull` downloads from.
    pub hub_url: String,
    /// Short names for `pull`: name → `ORG/REPO/FILE.gguf`.
    pub catalog: BTreeMap<String, String>,
    /// How the KV cache stores keys and values: `q8_0`, `f16` or `f32`.
    pub kv_cache: KvType,
    /// A cached prefix unused this long is dropped (its memory returns to
    /// the OS) and rebuilt from the conversation on the next turn; 0
    /// keeps it.
    pub kv_cache_idle_secs: u64,
    /// Generations one model runs together, sharing each forward pass;
    /// further requests wait in a queue (their wait shows as `queue_ms`).
    pub max_sequences: usize,
    /// Memory for the KV caches of running generations and the prefix
    /// cache together, in MiB. A generation is admitted with room for its
    /// prompt and `max_tokens`; when that does not fit, cached prefixes
    /// are dropped first, then the request is refused. 0 sets no budget
    /// (the machine's free memory still bounds it).
    pub kv_budget_mib: u64,
    /// The prefix cache's own bound, in MiB: the KV state of earlier
    /// prompts and replies kept for later requests that start alike.
    pub prefix_cache_mib: u64,
}

/// How long an unused KV cache is kept by default: as long as Ollama
/// keeps an unused model loaded.
pub const KV_CACHE_IDLE_SECS: u64 = 300;
/// Generations a model runs together by default (llama.cpp's server
/// runs 4 slots by default too).
pub const MAX_SEQUENCES: usize = 4;

impl Default for CandleConfig {
    fn default() -> Self {
        CandleConfig {
            kv_cache: KvType::default(),
            kv_cache_idle_secs: KV_CACHE_IDLE_SECS,
            max_sequences: MAX_SEQUENCES,
            kv_budget_mib: 2048,
            prefix_cache_mib: 256,
            threads: 0,
            hub_url: "https://huggingface.co".into(),
            catalog: BTreeMap::new(),
        }
    }
}

/// The Ollama backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OllamaConfig {
    /// Server address; unset means `OLLAMA_HOST`, else `127.0.0.1:11434`.
    pub host: Option<String>,
}

/// The response cache for deterministic requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub enabled: bool,
    /// How long an answer stays valid, in seconds.
    pub ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl_secs: 24 * 3600,
        }
    }
}

impl ModelsConfig {
    /// The chain of specifiers a profile tries: its configured models, then
    /// the default model (when that is not itself a profile), so every
    /// profile ends on something local.
    pub fn profile_chain(&self, profile: &str) -> Option<Vec<String>> {
        let configured = self.profiles.get(profile);
        if configured.is_none() && !PROFILES.contains(&profile) {
            return None;
        }
        let mut chain: Vec<String> = configured.cloned().unwrap_or_default();
        if !self.is_profile(&self.default) && !chain.contains(&self.default) {
            chain.push(self.default.clone());
        }
        Some(chain)
    }

    /// The names of the variables that hold the backends' API keys:
    /// secrets no sandboxed program may see.
    pub fn api_key_vars(&self) -> Vec<String> {
        match &self.backends {
            BackendsSection::Named(named) => named
                .values()
                .filter_map(|b| b.api_key_env.clone())
                .collect(),
            BackendsSection::Order(_) => Vec::new(),
        }
    }

    /// The backends to set up, in routing order; an error names what is
    /// wrong (an unknown or repeated name in the order, a negative price).
    pub fn plan(&self) -> Result<Vec<BackendPlan>, String> {
        usage::check(&self.prices, &self.budgets)?;
        backends::plan(&self.backends, &self.order)
    }

    /// What `model` costs on `backend`, if it has a price.
    pub fn price(&self, model: &str, backend: &str) -> Option<Price> {
        price_of(&self.prices, model, backend)
    }

    /// Whether `name` names a routing profile rather than a model.
    pub fn is_profile(&self, name: &str) -> bool {
        let name = name.strip_prefix("profile:").unwrap_or(name);
        PROFILES.contains(&name) || self.profiles.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults_and_unknown_keys_are_refused() {
        let c: ModelsConfig = toml::from_str("").unwrap();
        assert_eq!(c, ModelsConfig::default());
        let e = toml::from_str::<ModelsConfig>("defualt = \"x\"").unwrap_err();
        assert!(e.to_string().contains("defualt"), "{e}");
    }

    #[test]
    fn profiles_end_on_the_default_model() {
        let c: ModelsConfig = toml::from_str(
            "default = \"smol\"\n[profiles]\npremium = [\"big@ollama\", \"mid@ollama\"]\nfast = [\"tiny\"]",
        )
        .unwrap();
        assert_eq!(
            c.profile_chain("premium").unwrap(),
            ["big@ollama", "mid@ollama", "smol"]
        );
        assert_eq!(c.profile_chain("cheap").unwrap(), ["smol"]);
        assert_eq!(c.profile_chain("fast").unwrap(), ["tiny", "smol"]);
        assert!(c.profile_chain("smol").is_none());
        assert!(c.is_profile("profile:fast") && !c.is_profile("smol"));
    }
}
