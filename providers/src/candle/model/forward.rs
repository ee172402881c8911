//! The forward pass over a batch: the new tokens of several sequences
//! stacked into one matrix, so every weight matrix is read once per step
//! however many generations share it. Only attention and the KV cache are
//! per sequence; each row is computed exactly as it would be alone (the
//! kernels treat rows independently), so a batched generation's logits
//! are bit-identical to the same generation run by itself.

use super::attention::{attend, rms_norm, Segment};
use super::{sized, Model, ModelError, Sequence};
use crate::candle::quant::{self, Job};

/// One sequence's part of a forward pass.
pub struct Step<'a> {
    pub seq: &'a mut Sequence,
    /// Tokens to run after the sequence's positions (at least one).
    pub tokens: &'a [u32],
    /// Whether the logits of the last token are wanted (a prompt chunk
    /// before the last needs none).
    pub logits: bool,
}

/// Each step's outcome: the logits if asked for, or why that sequence
/// could not run (its context window is full, its cache cannot grow, a
/// token is outside the vocabulary) while the others did.
pub type StepResult = Result<Option<Vec<f32>>, ModelError>;

impl Model {
    /// Runs every step's tokens in one pass and appends them to its
    /// sequence. A step that cannot run is answered with its error and
    /// left out; the outer error means the pass itself failed, and every
    /// sequence is as it was before the call.
    pub fn forward_batch(&mut self, steps: &mut [Step<'_>]) -> Result<Vec<StepResult>, ModelError> {
        let vocab = self.embed.rows;
        let mut results: Vec<StepResult> = Vec::with_capacity(steps.len());
        let mut live = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter_mut().enumerate() {
            let checked = if step.tokens.is_empty() {
                Err(ModelError::Invalid("no tokens to run".into()))
            } else if let Some(t) = step.tokens.iter().find(|&&t| t as usize >= vocab) {
                Err(ModelError::Invalid(format!(
                    "token {t} is outside the vocabulary of {vocab}"
                )))
            } else {
                step.seq
                    .reserve(step.tokens.len())
                    .map_err(ModelError::from)
            };
            match checked {
                Ok(()) => {
                    live.push(i);
                    results.push(Ok(None));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if live.is_empty() {
            return Ok(results);
        }
        let mut batch: Vec<&mut Step<'_>> = steps
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| live.contains(i))
            .map(|(_, s)| s)
            .collect();
        match self.run_layers(&mut batch) {
            Ok(logits) => {
                let mut logits = logits.into_iter();
                for (&i, step) in live.iter().zip(batch.iter_mut()) {
                    step.seq.commit(step.tokens.len());
                    if step.logits {
                        results[i] = Ok(logits.next());
                    }
                }
                Ok(results)
            }
            Err(e) => {
                // Some layers may hold these positions already.
                for step in batch {
                    step.seq.roll_back();
                }
                Err(e)
            }
        }
    }

    /// The layers over the stacked rows of `batch`, whose sequences have
    /// room for them; the logits of each step that wants them, in order.
    fn run_layers(&mut self, batch: &mut [&mut Step<'_>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let Model {
            cfg,
            rope,
            embed,
            output,
            norm,
            layers,
            pool,
            scratch: s,
            ..
        } = self;
        let m: usize = batch.iter().map(|st| st.tokens.len()).sum();
        let e = cfg.n_embd;
        let h = cfg.heads;
        let (qw, kvw) = (h.n_head * h.head_dim, h.n_kv_head * h.head_dim);
        let x = sized(&mut s.x, m * e);
        let tokens = batch.iter().flat_map(|st| st.tokens.iter());
        for (i, &t) in tokens.enumerate() {
            embed.row(t as usize, &mut x[i * e..(i + 1) * e])?;
        }
        // Each row's rotation, from its own sequence's position.
        let half = rope.half();
        let (cos, sin) = (sized(&mut s.cos, m * half), sized(&mut s.sin, m * half));
        let mut row = 0;
        for st in batch.iter() {
            for i in 0..st.tokens.len() {
                let at = row * half..(row + 1) * half;
                rope.at(st.seq.len() + i, &mut cos[at.clone()], &mut sin[at]);
                row += 1;
            }
        }
        for (l, layer) in layers.iter_mut().enumerate() {
            let hn = sized(&mut s.h, m * e);
            rms_norm(x, &layer.attn_norm, cfg.eps, hn);
            let (q, k, v) = (
                sized(&mut s.q, m * qw),
                sized(&mut s.k, m * kvw),
                sized(&mut s.v, m * kvw),
            );
            let mut jobs = [
                Job {
                    w: &layer.wq,
                    out: q,
                },
                Job {
                    w: &layer.wk,
                    out: k,
                },
                Job {
                    w: &layer.wv,
                    out: v,
                },
            ];
            quant::matmul(pool, hn, m, &mut jobs, &mut s.acts)?;
            let [Job { out: q, .. }, Job { out: k, .. }, Job { out: v, .. }] = jobs;
            if let Some([bq, bk, bv]) = &layer.bias {
                for (out, b) in [(&mut *q, bq), (&mut *k, bk), (&mut *v, bv)] {
                    for row in out.chunks_exact_mut(b.len()) {
                        row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                    }
                }
            }
            if let Some([qn, kn]) = &layer.qk_norm {
                let mut tmp = vec![0f32; h.head_dim];
                for (out, w) in [(&mut *q, qn), (&mut *k, kn)] {
                    for head in out.chunks_exact_mut(h.head_dim) {
                        rms_norm(head, w, cfg.eps, &mut tmp);
                        head.copy_from_slice(&tmp);
                    }
                }
            }
            for i in 0..m {
                let (c, si) = (
                    &cos[i * half..(i + 1) * half],
                    &sin[i * half..(i + 1) * half],
                );
                rope.apply(&mut q[i * qw..(i + 1) * qw], h.head_dim, c, si);
                rope.apply(&mut k[i * kvw..(i + 1) * kvw], h.head_dim, c, si);
            }
            let mut row = 0;
            for st in batch.iter_mut() {
                let rows = row..row + st.tokens.len();
                st.seq.layer_mut(l).append(
                    &k[rows.start * kvw..rows.end * kvw],
                    &v[rows.start * kvw..rows.end * kvw],
                )?;
                row = rows.end;
            }
            let segments: Vec<Segment<'_>> = batch
                .iter()
                .map(|st| Segment {
                    cache: st.seq.layer(l),
                    pos0: st.seq.len(),
                    rows: st.tokens.len(),
                })
                .collect();
            let att = sized(&mut s.att, m * qw);
            attend(pool, h, q, &segments, att);
            let o = sized(&mut s.o, m * e);
            quant::matmul(
                pool,
                att,
                m,
                &mut [Job {
                    w: &layer.wo,
                    out: o,
                }],
                &mut s.acts,
            )?;
            x.iter_mut().zip(o.iter()).for_each(|(x, o)| *x += o);

            let hn = sized(&mut s.h, m * e);
            rms_norm(x, &layer.ffn_norm, cfg.eps, hn);
            let ff = layer.gate.rows;
            let (g, u) = (sized(&mut s.gate, m * ff), sized(&mut s.up, m * ff));
            let mut jobs = [
                Job {
                    w: &layer.gate,
                    out: g,
                },
                Job {
                    w: &layer.up,
                    out: u,
                },
            ];
            quant::matmul(pool, hn, m, &mut jobs, &mut s.acts)?;
            let [Job { out: g, .. }, Job { out: u, .. }] = jobs;
            // SiLU(gate) · up, as Candle: x / (1 + e^-x).
            g.iter_mut()
                .zip(u.iter())
                .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            let o = sized(&mut s.o, m * e);
            quant::matmul(
                pool,
                g,
                m,
                &mut [Job {
                    w: &layer.down,
                    out: o,
                }],
                &mut s.acts,
            )?;
            x.iter_mut().zip(o.iter()).for_each(|(x, o)| *x += o);
        }
        // The last row of each step that wants logits, through the output
        // matrix together.
        let mut wanted = Vec::new();
        let mut end = 0;
        for st in batch.iter() {
            end += st.tokens.len();
            if st.logits {
                wanted.push(end - 1);
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let n = wanted.len();
        let last = sized(&mut s.last, n * e);
        for (j, &r) in wanted.iter().enumerate() {
            rms_norm(
                &x[r * e..(r + 1) * e],
                norm,
                cfg.eps,
                &mut last[j * e..(j + 1) * e],
            );
        }
        let out_w = output.as_ref().unwrap_or(embed);
        let vocab = out_w.rows;
        let mut logits = vec![0f32; n * vocab];
        quant::matmul(
            pool,
            last,
            n,
            &mut [Job {
                w: out_w,
                out: &mut logits,
            }],
            &mut s.acts,
        )?;
        Ok(logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }
}
