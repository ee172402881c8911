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

    /// Rotated pairs per head: the length of a position's tables.
    pub fn half(&self) -> usize {
        self.theta.len()
    }

    /// The cos and sin tables for position `pos` ([`Rope::half`] long).
    pub fn at(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        for ((&t, c), s) in self.theta.iter().zip(cos).zip(sin) {
            let angle = pos as f32 * t;
            *c = angle.cos();
            *s = angle.sin();
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

/// One sequence's query rows in a batch: the next `rows` rows of `q`
/// sit at positions `pos0..pos0 + rows` of `cache`, which already holds
/// them.
pub struct Segment<'a> {
    pub cache: &'a KvCache,
    pub pos0: usize,
    pub rows: usize,
}

/// Causal attention of each segment's query rows over its own cache, the
/// segments' rows stacked in `q`. Writes `out` (rows × `n_head·head_dim`).
/// Parallel over (row, head) of all segments at once, so a batch of
/// one-token sequences pays one parallel step per layer, not one each.
pub fn attend(pool: &Pool, h: Heads, q: &[f32], segments: &[Segment<'_>], out: &mut [f32]) {
    let qw = h.n_head * h.head_dim;
    let mut starts = Vec::with_capacity(segments.len());
    let mut views = Vec::with_capacity(segments.len());
    let mut m = 0;
    for s in segments {
        assert!(s.cache.len() >= s.pos0 + s.rows);
        starts.push(m);
        // Only an empty cache has no storage, and it holds no positions.
        views.push(s.cache.views());
        m += s.rows;
    }
    assert!(q.len() == m * qw && out.len() == m * qw);
    let dst = Out(out.as_mut_ptr());
    pool.run(m * h.n_head, &|item| {
        let (row, head) = (item / h.n_head, item % h.n_head);
        let seg = starts.partition_point(|&s| s <= row) - 1;
        let Some((k, v)) = views[seg] else {
            return;
        };
        let len = segments[seg].pos0 + (row - starts[seg]) + 1;
        let qh = &q[row * qw + head * h.head_dim..][..h.head_dim];
        // SAFETY: this item alone writes head `head` of row `row`, which
        // lies inside `out` (asserted above); `out` outlives the call.
        let o = unsafe {
            std::slice::from_raw_parts_mut(dst.ptr().add(row * qw + head * h.head_dim), h.head_dim)
        };
        match (k, v) {
            (RowsView::F32(k), RowsView::F32(v)) => {
                attend_head(h, head, qh, &F32Rows(k), &F32Rows(v), len, o)
            }
            (RowsView::F16(k), RowsView::F16(v)) => {
                attend_head(h, head, qh, &F16Rows(k), &F16Rows(v), len, o)
            }
            (RowsView::Q8(kq, kd), RowsView::Q8(vq, vd)) => {
                attend_head(h, head, qh, &Q8Rows(kq, kd), &Q8Rows(vq, vd), len, o)
            }
            _ => unreachable!("keys and values are stored alike"),
        }
    });
}

/// One query head `qh` over the first `len` cached positions, into `o`.
fn attend_head<K: KvRows, V: KvRows>(
    h: Heads,
    head: usize,
    qh: &[f32],
    keys: &K,
    values: &V,
    len: usize,
    o: &mut [f32],
) {
    let kvw = h.n_kv_head * h.head_dim;
    let kv = (head / (h.n_head / h.n_kv_head)) * h.head_dim;
    let scale = 1.0 / (h.head_dim as f32).sqrt();
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
}
