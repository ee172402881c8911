//! Generations on a loaded model: [`LoadedModel::begin`] starts one (from
//! the longest cached prefix of its prompt), [`LoadedModel::step`] runs
//! one forward pass for any number of them together, and
//! [`LoadedModel::end`] keeps its KV state for later prompts. The
//! scheduler drives many at once; [`LoadedModel::generate`] drives one.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{LoadedModel, Network};
use crate::candle::generation::{Generation, Start, PROMPT_CHUNK};
use crate::candle::model::Step;
use crate::{ChatMessage, GenerationOptions, GenerationStats, OutputFormat, ProviderError};

/// What one generation's part of a pass came to: its index in `gens`,
/// the tokens it ran, and its logits (if asked for) or its error.
type Outcome = (usize, usize, Result<Option<Vec<f32>>, ProviderError>);

fn inference(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Inference(e.to_string())
}

impl LoadedModel {
    /// Starts a generation replying to `messages`: the prompt is encoded
    /// and its longest cached start copied in. Nothing runs yet.
    pub fn begin(
        &mut self,
        messages: &[ChatMessage],
        options: &GenerationOptions,
        format: Option<&OutputFormat>,
        arrived: Instant,
    ) -> Result<Generation, ProviderError> {
        let prompt = self.encode_chat(messages, options.max_tokens as usize)?;
        if prompt.is_empty() {
            return Err(ProviderError::Inference("the prompt is empty".into()));
        }
        let (seq, reused) = match &mut self.network {
            Network::Native(m) => match self.prefix.lookup(&prompt) {
                Ok(Some(hit)) => (Some(hit.seq), hit.positions),
                Ok(None) => (Some(m.new_sequence()), 0),
                Err(e) => {
                    tracing::warn!(model = %self.name, error = %e, "cannot copy a cached prefix; running the whole prompt");
                    (Some(m.new_sequence()), 0)
                }
            },
            Network::CandleMoe(moe) => {
                if std::mem::take(&mut self.moe_stale) {
                    moe.truncate(0);
                    self.moe_cached.clear();
                }
                // Its one cache: keep what the prompt starts with, but
                // run at least the last prompt token.
                let common = self
                    .moe_cached
                    .iter()
                    .zip(&prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                let kept = if common == self.moe_cached.len() && common < prompt.len() {
                    // Nothing to drop: the prompt extends the cache.
                    common.min(prompt.len() - 1)
                } else {
                    moe.truncate(common.min(prompt.len() - 1))
                };
                self.moe_cached.truncate(kept);
                (None, kept)
            }
        };
        let room = self.context_length.saturating_sub(prompt.len());
        self.active += 1;
        Ok(Generation::new(Start {
            epoch: self.epoch,
            arrived,
            prompt,
            reused,
            seq,
            options: options.clone(),
            format: format.cloned(),
            tokenizer: self.tokenizer.clone(),
            room,
        }))
    }

    /// Runs one forward pass for `gens` together: each decoding one takes
    /// its sampled token, and prompts fill what is left of a
    /// [`PROMPT_CHUNK`]-token budget in the order given. Each then samples
    /// if its input was complete. A generation that cannot run fails
    /// alone; a pass that fails fails those in it. Finished generations
    /// are skipped.
    pub fn step(&mut self, gens: &mut [&mut Generation]) {
        let decoding = gens
            .iter()
            .filter(|g| !g.is_finished() && !g.in_prompt())
            .count();
        let mut budget = PROMPT_CHUNK.saturating_sub(decoding).max(1);
        let mut planned = Vec::with_capacity(gens.len());
        for (i, g) in gens.iter().enumerate() {
            if let Some(input) = g.input(budget) {
                if g.in_prompt() {
                    budget -= input.range.len().min(budget);
                }
                planned.push((i, input));
            }
        }
        if planned.is_empty() {
            return;
        }
        let outcomes: Vec<Outcome> = match &mut self.network {
            Network::Native(m) => {
                let mut outcomes = Vec::new();
                let mut taken: Vec<(usize, usize)> = Vec::new();
                let mut steps = Vec::with_capacity(planned.len());
                // Lend each planned generation's tokens and cache to
                // the pass (they are distinct elements of `gens`).
                let mut rest: &mut [&mut Generation] = gens;
                let mut offset = 0;
                for (i, input) in &planned {
                    let tail = std::mem::take(&mut rest);
                    let (g, tail) = tail[i - offset..]
                        .split_first_mut()
                        .expect("planned indices are in order and in range");
                    offset = i + 1;
                    rest = tail;
                    let n = input.range.len();
                    match g.split(input.range.clone()) {
                        (tokens, Some(seq)) => {
                            taken.push((*i, n));
                            steps.push(Step {
                                seq,
                                tokens,
                                logits: input.logits,
                            });
                        }
                        (_, None) => {
                            let e = ProviderError::Inference("no KV cache".into());
                            outcomes.push((*i, n, Err(e)));
                        }
                    }
                }
                match m.forward_batch(&mut steps) {
                    Ok(results) => outcomes.extend(
                        taken
                            .iter()
                            .zip(results)
                            .map(|(&(i, n), r)| (i, n, r.map_err(inference))),
                    ),
                    Err(e) => {
                        let e = e.to_string();
                        outcomes.extend(
                            taken
                                .iter()
                                .map(|&(i, n)| (i, n, Err(ProviderError::Inference(e.clone())))),
                        );
                    }
                }
                outcomes
            }
            Network::CandleMoe(moe) => {
                let mut outcomes = Vec::new();
                for (k, (i, input)) in planned.iter().enumerate() {
                    let n = input.range.len();
                    if k > 0 {
                        let e = "this model runs one generation at a time";
                        outcomes.push((*i, n, Err(ProviderError::Inference(e.into()))));
                        continue;
                    }
                    let (tokens, _) = gens[*i].split(input.range.clone());
                    let tokens = tokens.to_vec();
                    let logits = match moe.forward(&tokens, self.moe_cached.len()) {
                        Ok(l) => {
                            self.moe_cached.extend_from_slice(&tokens);
                            Ok(input.logits.then_some(l))
                        }
                        Err(e) => {
                            // Part of the call may be cached: start afresh.
                            moe.truncate(0);
                            self.moe_cached.clear();
                            Err(e)
                        }
                    };
                    outcomes.push((*i, n, logits));
                }
                outcomes
            }
        };
        for (i, n, outcome) in outcomes {
            let g = &mut *gens[i];
            let advanced = outcome.and_then(|logits| {
                if let (Some(l), Some(format)) = (&logits, g.grammar_wanted()) {
                    let format = format.clone();
                    g.set_grammar(self.grammar(&format, l.len())?);
                }
                g.advance(n, logits, &self.eos)
            });
            if let Err(e) = advanced {
                g.fail(e);
            }
        }
    }

    /// Finishes `g`: its KV state joins the prefix cache (unless it
    /// failed, when its cache may be half-written), and its figures or
    /// its error are returned.
    pub fn end(&mut self, mut g: Generation) -> Result<GenerationStats, ProviderError> {
        self.active = self.active.saturating_sub(1);
        let error = g.take_error();
        let stats = g.stats();
        if let Some(seq) = g.seq.take() {
            // Not after a failure (the cache may be half-written), nor
            // across a forget (the conversation it holds was cleared).
            let sound = matches!(error, None | Some(ProviderError::Cancelled));
            if sound && g.epoch() == self.epoch {
                self.prefix.insert(g.cached_tokens().to_vec(), seq);
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Drops `g` without keeping anything of it (it was begun but never
    /// ran: its request waits or was refused).
    pub fn abandon(&mut self, g: Generation) {
        self.active = self.active.saturating_sub(1);
        drop(g);
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
        let mut g = self.begin(messages, options, format, Instant::now())?;
        while !g.is_finished() {
            if cancel.is_cancelled() {
                g.cancel();
                break;
            }
            self.step(&mut [&mut g]);
            let text = g.take_text();
            if !text.is_empty() {
                on_text(&text);
            }
        }
        let text = g.take_text();
        if !text.is_empty() {
            on_text(&text);
        }
        self.end(g)
    }
}
