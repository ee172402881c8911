//! Activations quantized once per matmul input row, in the two layouts the
//! weight kernels read: 32-value int8 blocks (ggml's Q8_0/Q8_1, for the
//! 32-value weight types) and 256-value int8 super-blocks with partial sums
//! (ggml's Q8_K, for the K-quants).

use super::{f16, QK, QK_K};

/// One activation block: 32 int8 values with scale `d` and `s` = d·Σq.
/// It serves as ggml's Q8_1 (for weights with a minimum) and Q8_0. The
/// scales are kept as f32 values already rounded to f16, as ggml stores
/// them, so the kernels need no conversion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

/// Quantizes `x` (a multiple of 32 long) into int8 blocks, ggml's
/// `quantize_row_q8_1` reference: d = max|x|/127, q = round(x/d).
pub fn quantize_row(x: &[f32], out: &mut [BlockQ8]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        block.d = f16::round(d);
        block.s = f16::round(d * sum as f32);
    }
}

/// One activation super-block for the K-quants: 256 int8 values with an
/// f32 scale and the sum of each 16 values (the K-quants' minimums and
/// Q6_K's offset need them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Quantizes `x` (a multiple of 256 long) into super-blocks, as ggml's
/// `quantize_row_q8_K` (the scale stays f32).
pub fn quantize_row_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
        for (sum, q) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
            *sum = q.iter().map(|&q| q as i16).sum();
        }
        block.d = d;
    }
}

/// The quantized forms of one matmul input, filled as the weights need.
#[derive(Default)]
pub struct Acts {
    pub q8: Vec<BlockQ8>,
    pub q8k: Vec<BlockQ8K>,
}

/// An activation block layout: how a row is quantized into it and where
/// a matmul keeps its rows.
pub trait ActRow: Copy + Default + Send + Sync + 'static {
    /// Values per block.
    const VALUES: usize;
    /// Quantizes `x` (a multiple of `VALUES` long) into `out`.
    fn quantize(x: &[f32], out: &mut [Self]);
    /// This layout's rows in `acts`.
    fn rows(acts: &Acts) -> &[Self];
}

impl ActRow for BlockQ8 {
    const VALUES: usize = QK;
    fn quantize(x: &[f32], out: &mut [Self]) {
        quantize_row(x, out)
    }
    fn rows(acts: &Acts) -> &[Self] {
        &acts.q8
    }
}

impl ActRow for BlockQ8K {
    const VALUES: usize = QK_K;
    fn quantize(x: &[f32], out: &mut [Self]) {
        quantize_row_k(x, out)
    }
    fn rows(acts: &Acts) -> &[Self] {
        &acts.q8k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::tests::random_row;

    #[test]
    fn quantized_rows_round_trip_within_half_a_step() {
        let x = random_row(96, 5);
        let mut q = vec![BlockQ8::default(); 3];
        quantize_row(&x, &mut q);
        for (b, x) in q.iter().zip(x.chunks_exact(QK)) {
            let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
            // s is d·Σq with the unrounded d, then rounded to f16.
            assert!(
                (b.s - b.d * sum as f32).abs() <= 2e-3 * b.s.abs() + 1e-6,
                "{} {}",
                b.s,
                b.d * sum as f32
            );
            for (&q, &v) in b.qs.iter().zip(x) {
                assert!(
                    (q as f32 * b.d - v).abs() <= b.d * 0.51 + 1e-3 * v.abs(),
                    "{q} {v}"
                );
            }
        }
    }

    #[test]
    fn super_blocks_round_trip_and_sum_their_sixteens() {
        let x = random_row(512, 8);
        let mut q = vec![BlockQ8K::default(); 2];
        quantize_row_k(&x, &mut q);
        for (b, x) in q.iter().zip(x.chunks_exact(QK_K)) {
            for (&q, &v) in b.qs.iter().zip(x) {
                assert!((q as f32 * b.d - v).abs() <= b.d * 0.51, "{q} {v}");
            }
            for (j, &s) in b.bsums.iter().enumerate() {
                let want: i32 = b.qs[16 * j..16 * (j + 1)].iter().map(|&q| q as i32).sum();
                assert_eq!(s as i32, want);
            }
        }
    }
}
