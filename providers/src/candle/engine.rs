//! A loaded model and its generation loop. Everything here runs on the
//! backend's own inference thread, never on the IO runtime.

use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use tokenizers::Tokenizer;
use tokio_util::sync::CancellationToken;

use super::detok::{Detokenizer, StopFilter};
use super::gguf::{invalid, Architecture, GgufFile};
use super::template::{ChatTemplate, CHATML};
use super::tokenizer;
use crate::{ChatMessage, GenerationOptions, GenerationStats, ProviderError};

/// Prompt tokens fed per forward pass, so a long prompt can be cancelled
/// between chunks.
const PROMPT_CHUNK: usize = 128;
/// How many recent tokens the repeat penalty looks at.
const REPEAT_WINDOW: usize = 64;

/// The weights of one of the supported architectures.
enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
}

impl Weights {
    fn forward(&mut self, input: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Llama(m) => m.forward(input, pos),
            Weights::Qwen2(m) => m.forward(input, pos),
            Weights::Qwen3(m) => m.forward(input, pos),
        }
    }

    fn clear_kv_cache(&mut self) {
        match self {
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
            Weights::Qwen3(m) => m.clear_kv_cache(),
        }
    }
}

/// A model in memory, ready to generate.
pub struct LoadedModel {
    pub name: String,
    pub architecture: Architecture,
    weights: Weights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eos: Vec<u32>,
    context_length: usize,
    device: Device,
}

fn candle_err(e: candle_core::Error) -> ProviderError {
    ProviderError::Inference(e.to_string())
}

impl LoadedModel {
    /// Loads weights, tokenizer and chat template.
    pub fn load(name: &str, gguf: GgufFile) -> Result<Self, ProviderError> {
        let device = Device::Cpu;
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
        let mut reader = BufReader::new(
            File::open(&path).map_err(|e| invalid(&path, format!("cannot open: {e}")))?,
        );
        let content = gguf.content;
        let weights = match architecture {
            Architecture::Llama => {
                quantized_llama::ModelWeights::from_gguf(content, &mut reader, &device)
                    .map(Weights::Llama)
            }
            Architecture::Qwen2 => {
                quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, &device)
                    .map(Weights::Qwen2)
            }
            Architecture::Qwen3 => {
                quantized_qwen3::ModelWeights::from_gguf(content, &mut reader, &device)
                    .map(Weights::Qwen3)
            }
        }
        .map_err(|e| {
            invalid(
                &path,
                format!("cannot load weights ({e}); the file may be truncated"),
            )
        })?;
        Ok(LoadedModel {
            name: name.to_owned(),
            architecture,
            weights,
            tokenizer,
            template,
            eos,
            context_length,
            device,
        })
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
        let started = Instant::now();
        let max_tokens = options.max_tokens as usize;
        let prompt = self.encode_chat(messages, max_tokens)?;
        if prompt.is_empty() {
            return Err(ProviderError::Inference("the prompt is empty".into()));
        }
        self.weights.clear_kv_cache();
        let mut sampler =
            LogitsProcessor::from_sampling(options.seed.unwrap_or(299_792_458), sampling(options));
        let mut logits = None;
        for (i, chunk) in prompt.chunks(PROMPT_CHUNK).enumerate() {
            if cancel.is_cancelled() {
                return Err(ProviderError::Cancelled);
            }
            let input = Tensor::new(chunk, &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(candle_err)?;
            logits = Some(
                self.weights
                    .forward(&input, i * PROMPT_CHUNK)
                    .map_err(candle_err)?,
            );
        }
        let prompt_done = Instant::now();
        let mut logits = logits.ok_or_else(|| ProviderError::Inference("no logits".into()))?;
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
            let logits_1d = logits
                .squeeze(0)
                .and_then(|l| l.to_dtype(candle_core::DType::F32))
                .map_err(candle_err)?;
            let logits_1d = match options.repeat_penalty {
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
            let input = Tensor::new(&[token], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(candle_err)?;
            logits = self
                .weights
                .forward(&input, all_tokens.len() - 1)
                .map_err(candle_err)?;
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
