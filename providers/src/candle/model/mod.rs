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
mod forward;
mod kv;
mod reserved;
mod sequence;
#[cfg(test)]
mod tests;

use std::io::Cursor;

use candle_core::quantized::gguf_file::Content;

pub use super::error::ModelError;
use super::gguf::Architecture;
use super::pool::Pool;
use super::quant::{Acts, Mapped, Matrix};
use attention::{Heads, Rope};
pub use forward::Step;
pub use kv::{KvError, KvType};
pub use sequence::Sequence;

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
    /// RoPE tables of every row in the batch.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// The rows whose logits are wanted, normed.
    last: Vec<f32>,
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// A loaded decoder. Its KV caches live in [`Sequence`]s, one per
/// generation, which the forward pass takes as arguments.
pub struct Model {
    cfg: Config,
    rope: Rope,
    embed: Matrix,
    /// `None`: tied to the embedding.
    output: Option<Matrix>,
    norm: Vec<f32>,
    layers: Vec<Layer>,
    /// How new sequences store keys and values.
    kv_kind: KvType,
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
            });
        }
        let heads = Heads {
            n_head,
            n_kv_head,
            head_dim,
        };
        let context = meta_u32(content, &key("context_length")).unwrap_or(4096);
        let model = Model {
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
            kv_kind: KvType::default(),
            pool: Pool::new(threads)?,
            scratch: Scratch::default(),
        };
        model.check_shapes()?;
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

    /// An empty sequence of this model, storing keys and values as the
    /// model's KV type.
    pub fn new_sequence(&self) -> Sequence {
        let h = self.cfg.heads;
        Sequence::new(
            self.kv_kind,
            self.cfg.n_layer,
            h.n_kv_head * h.head_dim,
            h.head_dim,
            self.cfg.context,
        )
    }

    /// Stores keys and values of sequences made from now on as `kind`.
    pub fn set_kv_type(&mut self, kind: KvType) {
        self.kv_kind = kind;
    }

    /// How new sequences store keys and values (Q8_0 falls back to f16
    /// where heads are narrower than its blocks).
    pub fn kv_type(&self) -> KvType {
        self.new_sequence().kind()
    }

    /// Bytes one position takes in a sequence, over all layers.
    pub fn kv_bytes_per_position(&self) -> u64 {
        let h = self.cfg.heads;
        let values = (self.cfg.n_layer * h.n_kv_head * h.head_dim * 2) as f64;
        (values * self.kv_type().bytes_per_value()).ceil() as u64
    }

    /// Positions the context window (and so a sequence) holds.
    pub fn context_length(&self) -> usize {
        self.cfg.context
    }

    /// Runs `tokens` at the positions after `seq`'s, appends them to it,
    /// and returns the logits of the last one.
    pub fn forward(&mut self, seq: &mut Sequence, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let mut steps = [Step {
            seq,
            tokens,
            logits: true,
        }];
        let [result] = self.forward_batch(&mut steps)?.try_into().map_err(|_| {
            ModelError::Invalid("a forward pass of one sequence gave other than one result".into())
        })?;
        result?.ok_or_else(|| ModelError::Invalid("no logits".into()))
    }
}
