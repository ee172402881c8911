//! Our own forward pass for the llama, qwen2 and qwen3 GGUF families: one
//! generic decoder over weights read straight from the file.
//!
//! It replaces candle-transformers' `quantized_llama` / `quantized_qwen2` /
//! `quantized_qwen3`, which (a) run every matmul through Candle's scalar
//! Q4_1 kernel and one thread-pool barrier each, (b) dequantize the token
//! embedding to f32 (113 MB for SmolLM2), and (c) pay Candle's per-op
//! overhead 30 times per token. Here the matmuls use the SIMD kernels in
//! `quant`, Q/K/V and gate/up each run as one parallel step, the embedding
//! stays quantized (rows are dequantized on lookup), and the rest works on
//! plain slices. The arithmetic follows those models (and ggml's kernels),
//! and `tests` checks the logits against them.

mod attention;
mod kv;
mod reserved;
#[cfg(test)]
mod tests;

use std::io::Cursor;

use candle_core::quantized::gguf_file::Content;

pub use super::error::ModelError;
use super::gguf::Architecture;
use super::pool::Pool;
use super::quant::{self, Acts, Job, Mapped, Matrix};
use attention::{attend, rms_norm, Heads, Rope};
use kv::KvCache;
pub use kv::{KvError, KvType};

/// Hyper-parameters from the GGUF metadata.
struct Config {
    n_layer: usize,
    n_embd: usize,
    heads: Heads,
    eps: f32,
    /// Positions the context window holds: the KV cache's bound.
    context: usize,
}

fn meta_u32(content: &Content, key: &str) -> Result<usize, ModelError> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .ok_or_else(|| ModelError::Metadata(key.to_owned()))
}

fn meta_f32(content: &Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    bias: Option<[Vec<f32>; 3]>,
    /// Qwen3's per-head RMSNorm of queries and keys.
    qk_norm: Option<[Vec<f32>; 2]>,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
    cache: KvCache,
}

/// Buffers reused across forward passes.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    acts: Acts,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// A loaded decoder with its KV cache.
pub struct Model {
    cfg: Config,
    rope: Rope,
    embed: Matrix,
    /// `None`: tied to the embedding.
    output: Option<Matrix>,
    norm: Vec<f32>,
    layers: Vec<Layer>,
    /// Positions held in the KV cache.
    len: usize,
    pool: Pool,
    scratch: Scratch,
}

/// A small tensor (a norm's weights, a bias) as f32, through Candle's
/// reader over the mapped file.
fn vector(content: &Content, map: &Mapped, name: &str) -> Result<Vec<f32>, ModelError> {
    if !content.tensor_infos.contains_key(name) {
        return Err(ModelError::Missing(name.to_owned()));
    }
    let t = content.tensor(&mut Cursor::new(&map[..]), name, &candle_core::Device::Cpu)?;
    Ok(t.dequantize(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_vec1()?)
}

impl Model {
    /// Views the weights of a llama, qwen2 or qwen3 GGUF in its mapped
    /// file and starts `threads` inference threads (the caller's included).
    pub fn load(
        arch: Architecture,
        content: &Content,
        map: &Mapped,
        threads: usize,
    ) -> Result<Self, ModelError> {
        let a = arch.as_str();
        let key = |k: &str| format!("{a}.{k}");
        if meta_u32(content, &key("expert_count")).unwrap_or(0) > 1 {
            return Err(ModelError::Unsupported("mixture-of-experts models".into()));
        }
        let n_embd = meta_u32(content, &key("embedding_length"))?;
        let n_head = meta_u32(content, &key("attention.head_count"))?;
        let n_kv_head = meta_u32(content, &key("attention.head_count_kv")).unwrap_or(n_head);
        let head_dim = match arch {
            Architecture::Qwen3 => meta_u32(content, &key("attention.key_length"))?,
            _ => n_embd / n_head.max(1),
        };
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || head_dim % 2 != 0 {
            return Err(ModelError::Invalid(format!(
                "{n_head} heads, {n_kv_head} KV heads of width {head_dim}"
            )));
        }
        let eps = meta_f32(content, &key("attention.layer_norm_rms_epsilon"))
            .ok_or_else(|| ModelError::Metadata(key("attention.layer_norm_rms_epsilon")))?;
        let base = meta_f32(content, &key("rope.freq_base")).unwrap_or(10_000.0);
        let rope = match arch {
            Architecture::Llama => {
                let dim = meta_u32(content, &key("rope.dimension_count")).unwrap_or(head_dim);
                Rope::new(dim.min(head_dim), base, false)
            }
            Architecture::Qwen2 => Rope::new(head_dim, base, true),
            // candle's qwen3 derives θ in f64. (It then keeps its tables in
            // f16 unless `general.dtype` says f32; we use f32 tables, as
            // llama.cpp does: f16 positions are inexact beyond 2048.)
            Architecture::Qwen3 => Rope::new_f64(head_dim, base as f64, true),
        };
        let n_layer = meta_u32(content, &key("block_count"))?;
        let embed = Matrix::load(content, map, "token_embd.weight")?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(Matrix::load(content, map, "output.weight")?)
        } else {
            None
        };
        let norm = vector(content, map, "output_norm.weight")?;
        let mut layers = Vec::with_capacity(n_layer);
        for l in 0..n_layer {
            let name = |s: &str| format!("blk.{l}.{s}");
            let mat = |s: &str| Matrix::load(content, map, &name(s));
            let vector = |s: &str| vector(content, map, &name(s));
            let bias = if content.tensor_infos.contains_key(&name("attn_q.bias")) {
                Some([
                    vector("attn_q.bias")?,
                    vector("attn_k.bias")?,
                    vector("attn_v.bias")?,
                ])
            } else if arch == Architecture::Qwen2 {
                return Err(ModelError::Missing(name("attn_q.bias")));
            } else {
                None
            };
            let qk_norm = if arch == Architecture::Qwen3 {
                Some([vector("attn_q_norm.weight")?, vector("attn_k_norm.weight")?])
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: vector("attn_norm.weight")?,
                wq: mat("attn_q.weight")?,
                wk: mat("attn_k.weight")?,
                wv: mat("attn_v.weight")?,
                bias,
                qk_norm,
                wo: mat("attn_output.weight")?,
                ffn_norm: vector("ffn_norm.weight")?,
                gate: mat("ffn_gate.weight")?,
                up: mat("ffn_up.weight")?,
                down: mat("ffn_down.weight")?,
                cache: KvCache::new(KvType::default(), 0, 0, 0),
            });
        }
        let heads = Heads {
            n_head,
            n_kv_head,
            head_dim,
        };
        let context = meta_u32(content, &key("context_length")).unwrap_or(4096);
        let mut model = Model {
            cfg: Config {
                n_layer,
                n_embd,
                heads,
                eps,
                context,
            },
            rope,
            embed,
            output,
            norm,
            layers,
            len: 0,
            pool: Pool::new(threads)?,
            scratch: Scratch::default(),
        };
        model.check_shapes()?;
        model.set_kv_type(KvType::default());
        Ok(model)
    }

    fn check_shapes(&self) -> Result<(), ModelError> {
        let e = self.cfg.n_embd;
        let Heads {
            n_head,
            n_kv_head,
            head_dim,
        } = self.cfg.heads;
        let (qw, kvw) = (n_head * head_dim, n_kv_head * head_dim);
        let ok = |m: &Matrix, rows: usize, cols: usize| m.rows == rows && m.cols == cols;
        let mut good =
            self.embed.cols == e && self.norm.len() == e && self.layers.len() == self.cfg.n_layer;
        good &= self.output.as_ref().is_none_or(|o| o.cols == e);
        for l in &self.layers {
            let ff = l.gate.rows;
            good &= ok(&l.wq, qw, e) && ok(&l.wk, kvw, e) && ok(&l.wv, kvw, e) && ok(&l.wo, e, qw);
            good &= ok(&l.up, ff, e)
                && ok(&l.down, e, ff)
                && l.attn_norm.len() == e
                && l.ffn_norm.len() == e;
            if let Some([bq, bk, bv]) = &l.bias {
                good &= bq.len() == qw && bk.len() == kvw && bv.len() == kvw;
            }
            if let Some([qn, kn]) = &l.qk_norm {
                good &= qn.len() == head_dim && kn.len() == head_dim;
            }
        }
        if good {
            Ok(())
        } else {
            Err(ModelError::Invalid(
                "tensor shapes do not match the metadata".into(),
            ))
        }
    }

    /// Positions in the KV cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Keeps the first `positions` positions of the KV cache, returning
    /// the memory of the rest.
    pub fn truncate(&mut self, positions: usize) {
        let positions = positions.min(self.len);
        for l in &mut self.layers {
            l.cache.truncate(positions);
        }
        self.len = positions;
    }

    /// Stores keys and values as `kind` from now on (the cache is emptied).
    pub fn set_kv_type(&mut self, kind: KvType) {
        let h = self.cfg.heads;
        let width = h.n_kv_head * h.head_dim;
        for l in &mut self.layers {
            l.cache = KvCache::new(kind, width, h.head_dim, self.cfg.context);
        }
        self.len = 0;
    }

    /// How keys and values are stored (Q8_0 may have fallen back to f16).
    pub fn kv_type(&self) -> KvType {
        self.layers
            .first()
            .map_or(KvType::default(), |l| l.cache.kind())
    }

    /// Bytes the KV cache holds over all layers.
    pub fn kv_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.cache.bytes()).sum()
    }

    /// Positions the context window (and so the KV cache) holds.
    pub fn context_length(&self) -> usize {
        self.cfg.context
    }

    /// Empties the KV cache and releases its memory.
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            l.cache.clear();
        }
        self.len = 0;
    }

    /// Runs `tokens` at the positions after the cached ones, appends them
    /// to the cache, and returns the logits of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let result = self.run_layers(tokens);
        if result.is_err() {
            // Some layers may hold these positions already: every layer
            // goes back to the length before the call.
            let len = self.len;
            for l in &mut self.layers {
                l.cache.truncate(len);
            }
        }
        result
    }

    fn run_layers(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let m = tokens.len();
        if m == 0 {
            return Err(ModelError::Invalid("no tokens to run".into()));
        }
        let Model {
            cfg,
            rope,
            embed,
            output,
            norm,
            layers,
            len,
            pool,
            scratch: s,
        } = self;
        let e = cfg.n_embd;
        let h = cfg.heads;
        let (qw, kvw) = (h.n_head * h.head_dim, h.n_kv_head * h.head_dim);
        let x = sized(&mut s.x, m * e);
        for (i, &t) in tokens.iter().enumerate() {
            embed.row(t as usize, &mut x[i * e..(i + 1) * e])?;
        }
        for layer in layers.iter_mut() {
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
                rope.at(*len + i, &mut s.cos, &mut s.sin);
                rope.apply(&mut q[i * qw..(i + 1) * qw], h.head_dim, &s.cos, &s.sin);
                rope.apply(&mut k[i * kvw..(i + 1) * kvw], h.head_dim, &s.cos, &s.sin);
            }
            layer.cache.append(k, v)?;
            let att = sized(&mut s.att, m * qw);
            attend(pool, h, q, &layer.cache, *len, m, att);
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
        *len += m;
        let last = &x[(m - 1) * e..];
        let hn = sized(&mut s.h, e);
        rms_norm(last, norm, cfg.eps, hn);
        let out_w = output.as_ref().unwrap_or(embed);
        let mut logits = vec![0f32; out_w.rows];
        quant::matmul(
            pool,
            hn,
            1,
            &mut [Job {
                w: out_w,
                out: &mut logits,
            }],
            &mut s.acts,
        )?;
        Ok(logits)
    }
}
