//! A loaded model and its generation loop. Everything here runs on the
//! backend's own inference thread, never on the IO runtime.

use std::fs::File;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama;
use tokenizers::Tokenizer;
use tokio_util::sync::CancellationToken;

use super::constrain::{Constraints, Grammar};
use super::detok::{Detokenizer, StopFilter};
use super::gguf::{invalid, Architecture, GgufFile};
use super::model::{KvType, Model, ModelError};
use super::quant::Mapped;
use super::template::{ChatTemplate, CHATML};
use super::tokenizer;
use crate::{ChatMessage, GenerationOptions, GenerationStats, OutputFormat, ProviderError};

/// Prompt tokens fed per forward pass, so a long prompt can be cancelled
/// between chunks. (The native forward pass gives the same logits however
/// the prompt is split.)
const PROMPT_CHUNK: usize = 128;
/// How many recent tokens the repeat penalty looks at.
const REPEAT_WINDOW: usize = 64;

/// The network: our own forward pass, or candle-transformers' llama for
/// the mixture-of-experts files ours does not implement.
enum Network {
    Native(Box<Model>),
    CandleMoe(Box<quantized_llama::ModelWeights>),
}

impl Network {
    /// Runs `tokens` after the `cached` positions; the logits of the last.
    fn forward(&mut self, tokens: &[u32], cached: usize) -> Result<Vec<f32>, ProviderError> {
        match self {
            Network::Native(m) => m
                .forward(tokens)
                .map_err(|e| ProviderError::Inference(e.to_string())),
            Network::CandleMoe(m) => Tensor::new(tokens, &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .and_then(|t| m.forward(&t, cached))
                .and_then(|l| l.squeeze(0))
                .and_then(|l| l.to_dtype(candle_core::DType::F32))
                .and_then(|l| l.to_vec1())
                .map_err(candle_err),
        }
    }

    /// Keeps the first `positions` cached positions (Candle's models can
    /// only drop everything).
    fn truncate(&mut self, positions: usize) -> usize {
        match self {
            Network::Native(m) => {
                m.truncate(positions);
                m.len()
            }
            Network::CandleMoe(m) => {
                m.clear_kv_cache();
                0
            }
        }
    }
}

/// A loaded model's KV cache, for status reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvFigures {
    /// Positions cached.
    pub positions: usize,
    /// Bytes they take (0 where Candle's model keeps the cache).
    pub bytes: u64,
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
    /// The tokens whose keys and values the network has cached, so a
    /// conversation's next turn only runs its new tokens.
    cached: Vec<u32>,
    tokenizer: Tokenizer,
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
                    .map(|m| Network::CandleMoe(Box::new(m)))
                    .map_err(|e| cannot(&e))?
            }
            Err(e) => return Err(cannot(&e)),
        };
        Ok(LoadedModel {
            name: name.to_owned(),
            architecture,
            network,
            cached: Vec::new(),
            tokenizer,
            template,
            eos,
            context_length,
            constraints: None,
        })
    }

    /// Stores the KV cache as `kind` from now on (the cache is emptied).
    /// Candle's mixture-of-experts model keeps its own f32 cache.
    pub fn set_kv_type(&mut self, kind: KvType) {
        if let Network::Native(m) = &mut self.network {
            m.set_kv_type(kind);
        }
        self.cached.clear();
    }

    /// What the KV cache holds now.
    pub fn kv_figures(&self) -> KvFigures {
        match &self.network {
            Network::Native(m) => KvFigures {
                positions: m.len(),
                bytes: m.kv_bytes(),
                kind: Some(m.kv_type()),
                context_length: m.context_length(),
            },
            Network::CandleMoe(_) => KvFigures {
                positions: self.cached.len(),
                bytes: 0,
                kind: None,
                context_length: self.context_length,
            },
        }
    }

    /// Forgets the cached conversation and returns the cache's memory, so
    /// the next generation processes its whole prompt.
    pub fn clear_cache(&mut self) {
        if let Network::Native(m) = &mut self.network {
            m.clear();
        } else {
            self.network.truncate(0);
        }
        self.cached.clear();
    }

    /// The logits after running `tokens` from an empty KV cache, which is
    /// emptied again after: the figures to compare with another engine
    /// on the same file.
    pub fn logits_after(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ProviderError> {
        self.clear_cache();
        let logits = self.network.forward(tokens, 0);
        self.clear_cache();
        logits
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

    /// Generates a reply to `messages`, handing text pieces to `on_text` as
    /// they are decoded. Stops at EOS, a stop string, `max_tokens`, the
    /// context limit, or when `cancel` trips.
    pub fn generate(
        &mut self,
        messages: &[ChatMessage],
        options: &GenerationOptions,
        cancel: &CancellationToken,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerationStats, ProviderError> {
        self.generate_as(messages, options, None, cancel, on_text)
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

    /// [`LoadedModel::generate`], holding the reply to `format` when one is
    /// given: only tokens the format allows can be sampled, and the reply
    /// ends as soon as it is complete.
    pub fn generate_as(
        &mut self,
        messages: &[ChatMessage],
        options: &GenerationOptions,
        format: Option<&OutputFormat>,
        cancel: &CancellationToken,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerationStats, ProviderError> {
        let started = Instant::now();
        let max_tokens = options.max_tokens as usize;
        let prompt = self.encode_chat(messages, max_tokens)?;
        if prompt.is_empty() {
            return Err(ProviderError::Inference("the prompt is empty".into()));
        }
        // Reuse the cached positions the prompt starts with (the system
        // prompt and earlier turns), but run at least its last token.
        let common = self
            .cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let kept = self.network.truncate(common.min(prompt.len() - 1));
        self.cached.truncate(kept);
        let mut sampler =
            LogitsProcessor::from_sampling(options.seed.unwrap_or(299_792_458), sampling(options));
        let mut logits = None;
        for chunk in prompt[kept..].chunks(PROMPT_CHUNK) {
            if cancel.is_cancelled() {
                return Err(ProviderError::Cancelled);
            }
            logits = Some(feed(&mut self.network, &mut self.cached, chunk)?);
        }
        let prompt_done = Instant::now();
        let mut logits = logits.ok_or_else(|| ProviderError::Inference("no logits".into()))?;
        let mut grammar = match format {
            Some(f) => Some(self.grammar(f, logits.len())?),
            None => None,
        };
        let mut all_tokens = prompt.clone();
        let mut detok = Detokenizer::new(&self.tokenizer);
        let mut stops = StopFilter::new(options.stop.clone());
        let mut generated = 0usize;
        let mut first_token_at = None;
        let mut finish_reason = "length";
        let mut stopped_by_string = false;
        let limit = max_tokens.min(self.context_length.saturating_sub(prompt.len()));
        while generated < limit {
            if cancel.is_cancelled() {
                finish_reason = "cancelled";
                break;
            }
            if let Some(g) = &mut grammar {
                g.mask(&mut logits)?;
            }
            let n_vocab = logits.len();
            let logits_1d = Tensor::from_vec(logits, n_vocab, &Device::Cpu).map_err(candle_err)?;
            // A typed answer copies names and figures from the prompt: the
            // repeat penalty would steer it away from them.
            let penalty = options.repeat_penalty.filter(|_| grammar.is_none());
            let logits_1d = match penalty {
                Some(p) if p != 1.0 => {
                    let start = all_tokens.len().saturating_sub(REPEAT_WINDOW);
                    candle_transformers::utils::apply_repeat_penalty(
                        &logits_1d,
                        p,
                        &all_tokens[start..],
                    )
                    .map_err(candle_err)?
                }
                _ => logits_1d,
            };
            let token = sampler.sample(&logits_1d).map_err(candle_err)?;
            first_token_at.get_or_insert_with(Instant::now);
            generated += 1;
            if self.eos.contains(&token) {
                finish_reason = "stop";
                break;
            }
            all_tokens.push(token);
            if let Some(g) = &mut grammar {
                g.commit(token)?;
            }
            if let Some(piece) = detok.push(token) {
                let (shown, stopped) = stops.push(&piece);
                if !shown.is_empty() {
                    on_text(&shown);
                }
                if stopped {
                    finish_reason = "stop";
                    stopped_by_string = true;
                    break;
                }
            }
            if grammar.as_ref().is_some_and(Grammar::is_finished) {
                // Complete: the only token left would be the end of turn.
                finish_reason = "stop";
                break;
            }
            logits = feed(&mut self.network, &mut self.cached, &[token])?;
        }
        if !stopped_by_string {
            // Release what the detokenizer and the stop filter held back.
            if let Some(rest) = detok.finish() {
                let (shown, _) = stops.push(&rest);
                if !shown.is_empty() {
                    on_text(&shown);
                }
            }
            let tail = stops.finish();
            if !tail.is_empty() {
                on_text(&tail);
            }
        }
        let done = Instant::now();
        Ok(GenerationStats {
            prompt_tokens: prompt.len() as u32,
            completion_tokens: generated as u32,
            prompt_ms: (prompt_done - started).as_secs_f64() * 1e3,
            first_token_ms: first_token_at.map(|t| (t - started).as_secs_f64() * 1e3),
            total_ms: (done - started).as_secs_f64() * 1e3,
            finish_reason: finish_reason.to_owned(),
            cached: false,
        })
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

/// Runs `tokens` after the cached ones and records them as cached.
fn feed(
    network: &mut Network,
    cached: &mut Vec<u32>,
    tokens: &[u32],
) -> Result<Vec<f32>, ProviderError> {
    match network.forward(tokens, cached.len()) {
        Ok(logits) => {
            cached.extend_from_slice(tokens);
            Ok(logits)
        }
        Err(e) => {
            // The cache may hold part of this call: start afresh next time.
            network.truncate(0);
            cached.clear();
            Err(e)
        }
    }
}

fn sampling(o: &GenerationOptions) -> Sampling {
    let temperature = o.temperature as f64;
    if temperature <= 1e-7 {
        return Sampling::ArgMax;
    }
    match (o.top_k, o.top_p) {
        (Some(k), Some(p)) => Sampling::TopKThenTopP {
            k: k as usize,
            p: p as f64,
            temperature,
        },
        (Some(k), None) => Sampling::TopK {
            k: k as usize,
            temperature,
        },
        (None, Some(p)) => Sampling::TopP {
            p: p as f64,
            temperature,
        },
        (None, None) => Sampling::All { temperature },
    }
}
