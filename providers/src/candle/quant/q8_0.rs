//! Q8_0 weights (32 int8 values with a scale) against Q8_0 activations:
//! the default model's token embedding, which is also its output layer
//! (49152 × 576, a fifth of the decode work). A port of ggml's
//! `ggml_vec_dot_q8_0_q8_0` for AVX2/FMA/F16C with a scalar fallback.

use super::{f16, BlockQ8, QK};

/// One GGUF Q8_0 block: value = d·q.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_0 {
    pub d: u16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

impl BlockQ8_0 {
    /// The 32 weights as f32.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = f16::to_f32(self.d);
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }
}

/// The reference dot product, ggml's generic `ggml_vec_dot_q8_0_q8_0`.
pub fn dot_scalar(x: &[BlockQ8_0], y: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
        sum += sumi as f32 * (f16::to_f32(x.d) * y.d);
    }
    sum
}

/// `out[j * r + i] = dot(row j of w, row i of acts)`; see
/// [`super::gemm_tile`].
pub fn gemm_tile(w: &[BlockQ8_0], kb: usize, acts: &[BlockQ8], r: usize, out: &mut [f32]) {
    super::gemm_tile(
        w,
        kb,
        acts,
        r,
        out,
        dot_scalar,
        #[cfg(target_arch = "x86_64")]
        [
            avx2::tile::<1>,
            avx2::tile::<2>,
            avx2::tile::<3>,
            avx2::tile::<4>,
        ],
    )
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BlockQ8, BlockQ8_0};

    /// `R` activation rows against every weight row. int8 × int8 goes
    /// through `maddubs` (unsigned × signed) by moving the weight's sign
    /// onto the activation, as ggml does.
    ///
    /// # Safety
    /// Needs AVX2, FMA and F16C; `acts` holds `R * kb` blocks, `w` a
    /// multiple of `kb`, `out` at least `R` per weight row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile<const R: usize>(
        w: &[BlockQ8_0],
        kb: usize,
        acts: &[BlockQ8],
        out: &mut [f32],
    ) {
        let ones = _mm256_set1_epi16(1);
        for (j, row) in w.chunks_exact(kb).enumerate() {
            let mut acc = [_mm256_setzero_ps(); R];
            for (b, x) in row.iter().enumerate() {
                let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(x.d as i32)));
                // SAFETY: `qs` is 32 bytes; unaligned load.
                let qx = unsafe { _mm256_loadu_si256(x.qs.as_ptr().cast()) };
                let ax = _mm256_sign_epi8(qx, qx);
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: acts has R * kb blocks and b < kb.
                    let y = unsafe { acts.get_unchecked(r * kb + b) };
                    // SAFETY: `qs` is 32 bytes; unaligned load.
                    let qy = unsafe { _mm256_loadu_si256(y.qs.as_ptr().cast()) };
                    let sy = _mm256_sign_epi8(qy, qx);
                    let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
                    *acc =
                        _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), _mm256_cvtepi32_ps(pairs), *acc);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                // SAFETY: out holds R values per weight row (caller's contract).
                unsafe { *out.get_unchecked_mut(j * R + r) = super::super::hsum256(*acc) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row;
    use crate::candle::quant::tests::random_row;

    fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ8_0> {
        let x = random_row(n * QK, seed);
        let mut q = vec![BlockQ8::default(); n];
        quantize_row(&x, &mut q);
        q.iter()
            .map(|b| BlockQ8_0 {
                d: f16::from_f32(b.d),
                qs: b.qs,
            })
            .collect()
    }

    #[test]
    fn simd_tiles_equal_the_scalar_reference() {
        for (seed, kb) in [(1u64, 1usize), (2, 3), (3, 18)] {
            let rows = 5;
            let w = random_blocks(rows * kb, seed);
            for r in 1..=4 {
                let mut acts = vec![BlockQ8::default(); r * kb];
                for (i, chunk) in acts.chunks_exact_mut(kb).enumerate() {
                    quantize_row(&random_row(kb * QK, seed * 10 + i as u64), chunk);
                }
                let mut out = vec![0f32; rows * r];
                gemm_tile(&w, kb, &acts, r, &mut out);
                for j in 0..rows {
                    for i in 0..r {
                        let (x, y) = (&w[j * kb..(j + 1) * kb], &acts[i * kb..(i + 1) * kb]);
                        let want = dot_scalar(x, y);
                        let scale: f32 = x
                            .iter()
                            .zip(y)
                            .map(|(x, y)| {
                                let s: i32 =
                                    x.qs.iter()
                                        .zip(&y.qs)
                                        .map(|(&a, &b)| (a as i32 * b as i32).abs())
                                        .sum();
                                s as f32 * (f16::to_f32(x.d) * y.d).abs()
                            })
                            .sum();
                        let got = out[j * r + i];
                        assert!(
                            (got - want).abs() <= 1e-5 * scale.max(1e-3),
                            "kb {kb} r {r} row {j} act {i}: {got} vs {want}"
                        );
                        assert_ne!(want, 0.0);
                    }
                }
            }
        }
    }
}
