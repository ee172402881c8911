//! The per-token parts of a layer on plain slices: RMSNorm, rotary
//! embeddings and causal attention over the KV cache ([`super::kv`]). Each query row is
//! computed the same way whether it comes in a batch (prompt) or alone
//! (decode), so a prompt split differently, or resumed from a cached
//! prefix, gives bit-identical results.

use std::cell::RefCell;

use super::kv::{F16Rows, F32Rows, KvCache, KvRows, Q8Rows, RowsView};
use crate::candle::pool::{Out, Pool};

/// x / sqrt(mean(x²) + eps) · w for each row of `x` (width `w.len()`),
/// into `out`; Candle's `rms_norm` arithmetic.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (x, out) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum2: f32 = x.iter().map(|v| v * v).sum();
        let scale = (sum2 / n as f32 + eps).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
            *o = v / scale * w;
        }
    }
}

/// Rotary position embedding of one model.
pub struct Rope {
    /// θᵢ for each rotated pair.
    theta: Vec<f32>,
    /// NEOX style (pairs i and i + d/2, Qwen) or GPT-J style (pairs 2i and
    /// 2i + 1, Llama GGUFs).
    neox: bool,
}

impl Rope {
    /// θᵢ = base^(-2i/dim), computed as Candle's models do.
    pub fn new(dim: usize, base: f32, neox: bool) -> Self {
        let theta = (0..dim)
            .step_by(2)
            .map(|i| 1f32 / base.powf(i as f32 / dim as f32))
            .collect();
        Rope { theta, neox }
    }

    /// θᵢ derived in f64, as candle's qwen3 does.
    pub fn new_f64(dim: usize, base: f64, neox: bool) -> Self {
        let theta = (0..dim)
            .step_by(2)
            .map(|i| 1f32 / base.powf(i as f64 / dim as f64) as f32)
            .collect();
        Rope { theta, neox }
    }

    /// The cos and sin tables for position `pos`.
    pub fn at(&self, pos: usize, cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
        cos.clear();
        sin.clear();
        for &t in &self.theta {
            let angle = pos as f32 * t;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }

    /// Rotates every `head_dim`-wide head of one row in place.
    pub fn apply(&self, row: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        let half = cos.len();
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = if self.neox {
                    (i, i + half)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// Shapes of the attention heads.
#[derive(Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Causal attention of the `m` query rows in `q` (positions `pos0..pos0+m`)
/// over the cache, which already holds those positions. Writes `out`
/// (`m × n_head·head_dim`). Parallel over (row, head).
pub fn attend(
    pool: &Pool,
    h: Heads,
    q: &[f32],
    cache: &KvCache,
    pos0: usize,
    m: usize,
    out: &mut [f32],
) {
    assert!(cache.len() >= pos0 + m);
    let Some((k, v)) = cache.views() else {
        // Only an empty cache has no storage, and it holds no positions.
        return;
    };
    match (k, v) {
        (RowsView::F32(k), RowsView::F32(v)) => {
            attend_over(pool, h, q, &F32Rows(k), &F32Rows(v), pos0, m, out)
        }
        (RowsView::F16(k), RowsView::F16(v)) => {
            attend_over(pool, h, q, &F16Rows(k), &F16Rows(v), pos0, m, out)
        }
        (RowsView::Q8(kq, kd), RowsView::Q8(vq, vd)) => {
            attend_over(pool, h, q, &Q8Rows(kq, kd), &Q8Rows(vq, vd), pos0, m, out)
        }
        _ => unreachable!("keys and values are stored alike"),
    }
}

#[allow(clippy::too_many_arguments)]
fn attend_over<K: KvRows, V: KvRows>(
    pool: &Pool,
    h: Heads,
    q: &[f32],
    keys: &K,
    values: &V,
    pos0: usize,
    m: usize,
    out: &mut [f32],
) {
    let qw = h.n_head * h.head_dim;
    let kvw = h.n_kv_head * h.head_dim;
    let group = h.n_head / h.n_kv_head;
    let scale = 1.0 / (h.head_dim as f32).sqrt();
    assert!(q.len() == m * qw && out.len() == m * qw);
    let dst = Out(out.as_mut_ptr());
    pool.run(m * h.n_head, &|item| {
        let (row, head) = (item / h.n_head, item % h.n_head);
        let len = pos0 + row + 1;
        let kv = (head / group) * h.head_dim;
        let qh = &q[row * qw + head * h.head_dim..][..h.head_dim];
        // SAFETY: this item alone writes head `head` of row `row`, which
        // lies inside `out` (asserted above); `out` outlives the call.
        let o = unsafe {
            std::slice::from_raw_parts_mut(dst.ptr().add(row * qw + head * h.head_dim), h.head_dim)
        };
        SCORES.with_borrow_mut(|scores| {
            scores.clear();
            scores.extend((0..len).map(|t| keys.dot(qh, t * kvw + kv, h.head_dim) * scale));
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            o.fill(0.0);
            for (t, &p) in scores.iter().enumerate() {
                values.axpy(o, p / sum, t * kvw + kv, h.head_dim);
            }
        });
    });
}
