//! A loaded model and its generation loop. Everything here runs on the
//! backend's own inference thread, never on the IO runtime.

mod step;

use std::fs::File;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama;
use tokenizers::Tokenizer;

use super::constrain::{Constraints, Grammar};
use super::gguf::{invalid, Architecture, GgufFile};
use super::model::{KvType, Model, ModelError};
use super::prefix::PrefixCache;
use super::quant::Mapped;
use super::template::{ChatTemplate, CHATML};
use super::tokenizer;
use crate::{ChatMessage, OutputFormat, ProviderError};

/// The prefix cache's bound when none is configured.
pub const DEFAULT_PREFIX_CACHE_BYTES: u64 = 256 << 20;

/// The network: our own forward pass, or candle-transformers' llama for
/// the mixture-of-experts files ours does not implement.
enum Network {
    Native(Box<Model>),
    CandleMoe(Box<Moe>),
}

/// candle-transformers' llama, which keeps one KV cache inside.
struct Moe(quantized_llama::ModelWeights);

impl Moe {
    /// Runs `tokens` after the `cached` positions; the logits of the last.
    fn forward(&mut self, tokens: &[u32], cached: usize) -> Result<Vec<f32>, ProviderError> {
        Tensor::new(tokens, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .and_then(|t| self.0.forward(&t, cached))
            .and_then(|l| l.squeeze(0))
            .and_then(|l| l.to_dtype(candle_core::DType::F32))
            .and_then(|l| l.to_vec1())
            .map_err(candle_err)
    }

    /// Keeps the first `positions` cached positions; Candle's model can
    /// only drop everything, so that is how many it keeps: none.
    fn truncate(&mut self, _positions: usize) -> usize {
        self.0.clear_kv_cache();
        0
    }
}

/// A loaded model's KV caches, for status reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvFigures {
    /// Positions held: the running generations' and the prefix cache's.
    pub positions: usize,
    /// Bytes they take (0 where Candle's model keeps the cache).
    pub bytes: u64,
    /// Generations running now.
    pub sequences: usize,
    /// Prefix-cache entries.
    pub prefixes: usize,
    /// How they are stored; `None` for Candle's model.
    pub kind: Option<KvType>,
    /// The most positions the cache will hold.
    pub context_length: usize,
}

/// Inference threads when none are configured: one per available CPU.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A model in memory, ready to generate.
pub struct LoadedModel {
    pub name: String,
    pub architecture: Architecture,
    network: Network,
    /// Earlier sequences' KV state, so a prompt that starts alike (the
    /// conversation so far, a fixed template head) runs only the rest.
    prefix: PrefixCache,
    /// For Candle's model, which keeps one cache of its own: the tokens
    /// it holds, and when it last ran.
    moe_cached: Vec<u32>,
    moe_used: Option<std::time::Instant>,
    /// Candle's cache was forgotten while a generation used it: it is
    /// emptied when the next one begins.
    moe_stale: bool,
    /// Generations begun and not yet ended.
    active: usize,
    /// Bumped by every [`LoadedModel::clear_cache`]: a generation begun
    /// before it does not put its cache back into the prefix cache.
    epoch: u64,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    eos: Vec<u32>,
    context_length: usize,
    /// Built on the first constrained request: most models never need it.
    constraints: Option<Constraints>,
}

fn candle_err(e: candle_core::Error) -> ProviderError {
    ProviderError::Inference(e.to_string())
}

impl LoadedModel {
    /// Loads weights, tokenizer and chat template, with one inference
    /// thread per CPU.
    pub fn load(name: &str, gguf: GgufFile) -> Result<Self, ProviderError> {
        Self::load_with_threads(name, gguf, default_threads())
    }

    /// [`LoadedModel::load`] with `threads` inference threads (the calling
    /// thread and `threads - 1` workers).
    pub fn load_with_threads(
        name: &str,
        gguf: GgufFile,
        threads: usize,
    ) -> Result<Self, ProviderError> {
        let tokenizer = tokenizer::load(&gguf)?;
        let token_text = |key: &str| {
            tokenizer::token_id(&gguf, key)
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let bos = token_text("tokenizer.ggml.bos_token_id");
        let eos_text = token_text("tokenizer.ggml.eos_token_id");
        let source = gguf
            .get_str("tokenizer.chat_template")
            .unwrap_or(CHATML)
            .to_owned();
        let template = ChatTemplate::new(&source, &bos, &eos_text)
            .or_else(|e| {
                tracing::warn!(model = name, error = %e, "chat template does not compile; using ChatML");
                ChatTemplate::new(CHATML, &bos, &eos_text)
            })
            .map_err(|e| invalid(&gguf.path, format!("chat template: {e}")))?;
        let mut eos: Vec<u32> = tokenizer::token_id(&gguf, "tokenizer.ggml.eos_token_id")
            .into_iter()
            .collect();
        // Chat models end turns with these even when EOS names another token.
        for marker in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"] {
            if let Some(id) = tokenizer.token_to_id(marker) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        let context_length = gguf.context_length().unwrap_or(4096) as usize;
        let architecture = gguf.architecture;
        let path = gguf.path.clone();
        let map = map_file(&path)?;
        let content = gguf.content;
        let cannot =
            |e: &dyn std::fmt::Display| invalid(&path, format!("cannot load weights: {e}"));
        let network = match Model::load(architecture, &content, &map, threads.max(1)) {
            Ok(model) => Network::Native(Box::new(model)),
            Err(ModelError::Unsupported(why)) if architecture == Architecture::Llama => {
                tracing::info!(model = name, "{why}: using candle-transformers' llama");
                let mut reader = std::io::Cursor::new(&map[..]);
                quantized_llama::ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)
                    .map(|m| Network::CandleMoe(Box::new(Moe(m))))
                    .map_err(|e| cannot(&e))?
            }
            Err(e) => return Err(cannot(&e)),
        };
        Ok(LoadedModel {
            name: name.to_owned(),
            architecture,
            network,
            prefix: PrefixCache::new(DEFAULT_PREFIX_CACHE_BYTES),
            moe_cached: Vec::new(),
            moe_used: None,
            moe_stale: false,
            active: 0,
            epoch: 0,
            tokenizer: Arc::new(tokenizer),
            template,
            eos,
            context_length,
            constraints: None,
        })
    }

    /// Stores KV caches as `kind` from now on (the prefix cache is
    /// emptied). Candle's mixture-of-experts model keeps its own f32 cache.
    pub fn set_kv_type(&mut self, kind: KvType) {
        if let Network::Native(m) = &mut self.network {
            m.set_kv_type(kind);
        }
        self.clear_cache();
    }

    /// Bounds the prefix cache to `bytes` (evicting the least recently
    /// used entries now if it holds more).
    pub fn set_prefix_cache_limit(&mut self, bytes: u64) {
        self.prefix.set_limit(bytes);
    }

    /// What the prefix cache (or Candle's own cache) holds now.
    pub fn kv_figures(&self) -> KvFigures {
        match &self.network {
            Network::Native(m) => KvFigures {
                positions: self.prefix.positions(),
                bytes: self.prefix.bytes(),
                sequences: 0,
                prefixes: self.prefix.len(),
                kind: Some(m.kv_type()),
                context_length: m.context_length(),
            },
            Network::CandleMoe(_) => KvFigures {
                positions: self.moe_cached.len(),
                bytes: 0,
                sequences: 0,
                prefixes: usize::from(!self.moe_cached.is_empty()),
                kind: None,
                context_length: self.context_length,
            },
        }
    }

    /// Bytes one position of a sequence takes (0 for Candle's model,
    /// whose cache is its own).
    pub fn kv_bytes_per_position(&self) -> u64 {
        match &self.network {
            Network::Native(m) => m.kv_bytes_per_position(),
            Network::CandleMoe(_) => 0,
        }
    }

    /// Whether generations can share a forward pass: Candle's model
    /// keeps a single cache, so it runs one at a time.
    pub fn batches(&self) -> bool {
        matches!(self.network, Network::Native(_))
    }

    /// Positions the context window holds.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// When the least recently used cached prefix was last used.
    pub fn cache_last_used(&self) -> Option<std::time::Instant> {
        let moe = self
            .moe_used
            .filter(|_| self.active == 0 && !self.moe_cached.is_empty());
        match (self.prefix.oldest(), moe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops cached prefixes (and Candle's cache, when no generation
    /// uses it) unused for `idle`; the positions dropped.
    pub fn drop_idle(&mut self, idle: std::time::Duration) -> usize {
        let mut dropped = self.prefix.drop_idle(idle);
        let moe_idle = self.moe_used.is_some_and(|t| t.elapsed() >= idle);
        if self.active == 0 && moe_idle && !self.moe_cached.is_empty() {
            dropped += self.moe_cached.len();
            if let Network::CandleMoe(moe) = &mut self.network {
                moe.truncate(0);
            }
            self.moe_cached.clear();
        }
        dropped
    }

    /// The prefix cache, for the scheduler's memory accounting.
    pub(super) fn prefix_cache(&mut self) -> &mut PrefixCache {
        &mut self.prefix
    }

    /// Forgets every cached prefix (and Candle's cached conversation) and
    /// returns their memory, so the next generation runs its whole prompt.
    pub fn clear_cache(&mut self) {
        self.prefix.clear();
        self.epoch += 1;
        if self.active > 0 {
            // A running generation still reads Candle's cache: empty it
            // when the next one begins.
            self.moe_stale = !self.moe_cached.is_empty();
            return;
        }
        if let Network::CandleMoe(moe) = &mut self.network {
            moe.truncate(0);
        }
        self.moe_cached.clear();
    }

    /// The logits after running `tokens` from an empty KV cache (nothing
    /// is cached after): the figures to compare with another engine on
    /// the same file.
    pub fn logits_after(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ProviderError> {
        match &mut self.network {
            Network::Native(m) => m
                .forward(&mut m.new_sequence(), tokens)
                .map_err(|e| ProviderError::Inference(e.to_string())),
            Network::CandleMoe(moe) => {
                moe.truncate(0);
                let logits = moe.forward(tokens, 0);
                moe.truncate(0);
                self.moe_cached.clear();
                logits
            }
        }
    }

    /// The prompt tokens for a conversation, trimmed to fit the context.
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        max_tokens: usize,
    ) -> Result<Vec<u32>, ProviderError> {
        let prompt = self
            .template
            .render(messages)
            .map_err(|e| ProviderError::Inference(format!("chat template: {e}")))?;
        let encoding = self
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| ProviderError::Inference(format!("tokenizer: {e}")))?;
        let mut tokens = encoding.get_ids().to_vec();
        let budget = self
            .context_length
            .saturating_sub(max_tokens.min(self.context_length / 2));
        if tokens.len() > budget {
            // Keep the end of the conversation: the newest turns matter most.
            tokens.drain(..tokens.len() - budget);
        }
        Ok(tokens)
    }

    /// Compiles `format` against this model's vocabulary now (a cached
    /// schema is only looked up), so the first constrained generation does
    /// not pay for it; benchmarks time it.
    pub fn compile_format(&mut self, format: &OutputFormat) -> Result<(), ProviderError> {
        let n_vocab = self.tokenizer.get_vocab_size(true);
        self.grammar(format, n_vocab).map(drop)
    }

    /// The grammar a constrained generation starts with (the model's
    /// vocabulary is read on the first; compiled schemas are cached).
    fn grammar(&mut self, format: &OutputFormat, n_vocab: usize) -> Result<Grammar, ProviderError> {
        let constraints = match &mut self.constraints {
            Some(c) => c,
            empty => empty.insert(Constraints::new(&self.tokenizer, &self.eos, n_vocab)?),
        };
        constraints.start(format)
    }
}

/// Maps a model file read-only and asks the kernel to read it ahead.
/// Pages are not mapped up front (llama.cpp's `MAP_POPULATE` costs it
/// ~0.1 s per GiB at load): the first forward pass maps them as it
/// touches them, 16 pages per fault with the kernel's fault-around, from
/// the page cache the read-ahead filled.
fn map_file(path: &std::path::Path) -> Result<Mapped, ProviderError> {
    let file = File::open(path).map_err(|e| invalid(path, format!("cannot open: {e}")))?;
    // SAFETY: the mapping is read-only, and every view into it checks its
    // bounds and alignment. A model file rewritten in place while loaded
    // would change what the forward pass reads (or fault, if truncated),
    // as with llama.cpp; the backend itself never does that: pull and
    // import write aside and rename into place, and remove unlinks, so a
    // loaded model keeps its own inode.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| invalid(path, format!("cannot map into memory: {e}")))?;
    if let Err(e) = map.advise(memmap2::Advice::WillNeed) {
        tracing::debug!(path = %path.display(), error = %e, "no read-ahead for the model file");
    }
    Ok(std::sync::Arc::new(map))
}
