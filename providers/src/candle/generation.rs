//! One generation's state between forward passes: what it still has to
//! run, how it samples, what text it has produced and why it ended.
//!
//! A generation knows nothing of the network or of other generations. The
//! model ([`super::engine::LoadedModel::step`]) asks each for its next
//! input ([`Generation::input`]), runs the inputs of many in one pass,
//! and hands each its logits ([`Generation::advance`]); the scheduler
//! takes the text out between steps. So one generation's stop, error or
//! cancellation never touches another's state.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;

use super::constrain::Grammar;
use super::detok::{Detokenizer, StopFilter};
use super::model::Sequence;
use crate::{GenerationOptions, GenerationStats, OutputFormat, ProviderError};

/// Prompt tokens one generation runs per forward pass, so a long prompt
/// neither holds up the others decoding beside it for long nor delays a
/// cancellation. (The forward pass gives the same logits however the
/// prompt is split.)
pub const PROMPT_CHUNK: usize = 128;
/// How many recent tokens the repeat penalty looks at.
const REPEAT_WINDOW: usize = 64;

/// What a generation asks of the next forward pass.
pub struct Input {
    /// Which of its tokens to run ([`Generation::split`] lends them).
    pub range: Range<usize>,
    /// Whether this input ends what it has to run before sampling (the
    /// prompt's last chunk, or the token sampled last).
    pub logits: bool,
}

/// One generation in progress.
pub struct Generation {
    /// The model's forget epoch when it began.
    epoch: u64,
    /// When the request arrived (it may have waited for its model to load
    /// and for a free slot).
    arrived: Instant,
    /// When it began waiting for a slot.
    queued: Instant,
    /// When it got one and began.
    admitted: Instant,
    /// The prompt, then each token sampled.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// How many of `tokens` the KV cache holds.
    fed: usize,
    /// Prompt positions taken from a cached prefix instead of run.
    reused: usize,
    /// Its KV cache (`None` where the network keeps its own).
    pub seq: Option<Sequence>,
    sampler: LogitsProcessor,
    /// The output format, until the first logits build its grammar.
    format: Option<OutputFormat>,
    grammar: Option<Grammar>,
    repeat_penalty: Option<f32>,
    detok: Detokenizer,
    stops: StopFilter,
    generated: usize,
    limit: usize,
    prompt_done: Option<Instant>,
    first_token_at: Option<Instant>,
    /// Why it ended, once it has.
    finish: Option<&'static str>,
    /// What went wrong, if it failed (or was cancelled in its prompt).
    error: Option<ProviderError>,
    stopped_by_string: bool,
    /// Text produced since the scheduler last took it.
    text: String,
}

/// How a generation starts.
pub struct Start {
    /// The model's forget epoch when it began.
    pub epoch: u64,
    pub arrived: Instant,
    pub prompt: Vec<u32>,
    /// Prompt positions `seq` (or the network's own cache) already holds.
    pub reused: usize,
    pub seq: Option<Sequence>,
    pub options: GenerationOptions,
    pub format: Option<OutputFormat>,
    pub tokenizer: Arc<Tokenizer>,
    /// The most tokens the context window leaves room for.
    pub room: usize,
}

impl Generation {
    pub fn new(start: Start) -> Generation {
        let o = &start.options;
        let limit = (o.max_tokens as usize).min(start.room);
        Generation {
            epoch: start.epoch,
            arrived: start.arrived,
            queued: Instant::now(),
            admitted: Instant::now(),
            prompt_len: start.prompt.len(),
            fed: start.reused,
            reused: start.reused,
            tokens: start.prompt,
            seq: start.seq,
            sampler: LogitsProcessor::from_sampling(o.seed.unwrap_or(299_792_458), sampling(o)),
            format: start.format,
            grammar: None,
            repeat_penalty: o.repeat_penalty,
            detok: Detokenizer::new(start.tokenizer),
            stops: StopFilter::new(o.stop.clone()),
            generated: 0,
            limit,
            prompt_done: None,
            first_token_at: None,
            finish: None,
            error: None,
            stopped_by_string: false,
            text: String::new(),
        }
    }

    /// Counts its wait for a slot from `queued` (the model had loaded).
    pub fn queued_since(mut self, queued: Instant) -> Generation {
        self.queued = queued.max(self.arrived);
        self
    }

    /// What to run next, with at most `budget` prompt tokens; `None` once
    /// finished, or while its prompt waits for budget.
    pub fn input(&self, budget: usize) -> Option<Input> {
        if self.finish.is_some() {
            return None;
        }
        if self.fed < self.prompt_len {
            let end = self.prompt_len.min(self.fed + PROMPT_CHUNK.min(budget));
            return (end > self.fed).then_some(Input {
                range: self.fed..end,
                logits: end == self.prompt_len,
            });
        }
        // Decoding: the token sampled last.
        Some(Input {
            range: self.fed..self.tokens.len(),
            logits: true,
        })
    }

    /// The tokens of `range` and the KV cache they run into.
    pub fn split(&mut self, range: Range<usize>) -> (&[u32], Option<&mut Sequence>) {
        (&self.tokens[range], self.seq.as_mut())
    }

    /// Whether it is still running its prompt.
    pub fn in_prompt(&self) -> bool {
        self.fed < self.prompt_len
    }

    /// The format whose grammar the first logits need, if not built yet.
    pub fn grammar_wanted(&self) -> Option<&OutputFormat> {
        self.format.as_ref().filter(|_| self.grammar.is_none())
    }

    pub fn set_grammar(&mut self, grammar: Grammar) {
        self.grammar = Some(grammar);
    }

    /// Takes `n` tokens of its input as run; with `logits`, samples the
    /// next token, shows its text and decides whether it is done.
    pub fn advance(
        &mut self,
        n: usize,
        logits: Option<Vec<f32>>,
        eos: &[u32],
    ) -> Result<(), ProviderError> {
        self.fed += n;
        let Some(mut logits) = logits else {
            return Ok(());
        };
        self.prompt_done.get_or_insert_with(Instant::now);
        if self.generated >= self.limit {
            return self.end("length");
        }
        if let Some(g) = &mut self.grammar {
            g.mask(&mut logits)?;
        }
        let n_vocab = logits.len();
        let logits = Tensor::from_vec(logits, n_vocab, &Device::Cpu).map_err(candle_err)?;
        // A typed answer copies names and figures from the prompt: the
        // repeat penalty would steer it away from them.
        let penalty = self.repeat_penalty.filter(|_| self.grammar.is_none());
        let logits = match penalty {
            Some(p) if p != 1.0 => {
                let start = self.tokens.len().saturating_sub(REPEAT_WINDOW);
                candle_transformers::utils::apply_repeat_penalty(&logits, p, &self.tokens[start..])
                    .map_err(candle_err)?
            }
            _ => logits,
        };
        let token = self.sampler.sample(&logits).map_err(candle_err)?;
        self.first_token_at.get_or_insert_with(Instant::now);
        self.generated += 1;
        if eos.contains(&token) {
            return self.end("stop");
        }
        self.tokens.push(token);
        if let Some(g) = &mut self.grammar {
            g.commit(token)?;
        }
        if let Some(piece) = self.detok.push(token) {
            let (shown, stopped) = self.stops.push(&piece);
            self.text.push_str(&shown);
            if stopped {
                self.stopped_by_string = true;
                return self.end("stop");
            }
        }
        if self.grammar.as_ref().is_some_and(Grammar::is_finished) {
            // Complete: the only token left would be the end of turn.
            return self.end("stop");
        }
        if self.generated >= self.limit {
            return self.end("length");
        }
        Ok(())
    }

    /// Ends it now: while in its prompt, as an error (nothing was
    /// generated); later as `cancelled`, and what was generated stands.
    pub fn cancel(&mut self) {
        if self.in_prompt() {
            self.fail(ProviderError::Cancelled);
        } else {
            let _ = self.end("cancelled");
        }
    }

    /// Ends it with `error`.
    pub fn fail(&mut self, error: ProviderError) {
        if self.finish.is_none() {
            self.finish = Some("error");
            self.error = Some(error);
        }
    }

    /// What it failed with, if it did.
    pub fn take_error(&mut self) -> Option<ProviderError> {
        self.error.take()
    }

    fn end(&mut self, reason: &'static str) -> Result<(), ProviderError> {
        if self.finish.is_some() {
            return Ok(());
        }
        self.finish = Some(reason);
        if !self.stopped_by_string {
            // Release what the detokenizer and the stop filter held back.
            if let Some(rest) = self.detok.finish() {
                let (shown, _) = self.stops.push(&rest);
                self.text.push_str(&shown);
            }
            self.text.push_str(&self.stops.finish());
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// The text produced since the last call.
    pub fn take_text(&mut self) -> String {
        std::mem::take(&mut self.text)
    }

    /// The tokens its KV cache holds, in order.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.tokens[..self.fed]
    }

    /// The model's forget epoch when it began.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Prompt positions taken from a cache rather than run.
    pub fn reused(&self) -> usize {
        self.reused
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Its figures, as they stand.
    pub fn stats(&self) -> GenerationStats {
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
        let now = Instant::now();
        GenerationStats {
            prompt_tokens: self.prompt_len as u32,
            completion_tokens: self.generated as u32,
            prompt_ms: ms(self.admitted, self.prompt_done.unwrap_or(now)),
            first_token_ms: self.first_token_at.map(|t| ms(self.arrived, t)),
            total_ms: ms(self.arrived, now),
            finish_reason: self.finish.unwrap_or("length").to_owned(),
            cached: false,
            queue_ms: ms(self.queued, self.admitted),
            cached_prompt_tokens: self.reused as u32,
        }
    }
}

fn candle_err(e: candle_core::Error) -> ProviderError {
    ProviderError::Inference(e.to_string())
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
