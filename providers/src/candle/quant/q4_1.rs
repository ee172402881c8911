//! Q4_1 weights (32 four-bit values with a scale and a minimum) against
//! Q8_1 activations: the kernel behind nearly every matmul of the default
//! model. Candle 0.11 has only a scalar loop for it; this is a port of
//! ggml's `ggml_vec_dot_q4_1_q8_1` (same block layout, same per-block
//! arithmetic), for AVX2/FMA/F16C with a scalar fallback, extended to
//! several activation rows per weight row so prompt processing unpacks each
//! weight block once for up to four tokens.

use super::{f16, BlockQ8, QK};

/// One GGUF Q4_1 block: value = d·q + m, q in 0..16. Byte `j` of `qs` holds
/// element `j` in its low nibble and element `j + 16` in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_1 {
    pub d: u16,
    pub m: u16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

impl BlockQ4_1 {
    /// The 32 weights as f32.
    pub fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (f16::to_f32(self.d), f16::to_f32(self.m));
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = (q & 0x0f) as f32 * d + m;
            out[j + QK / 2] = (q >> 4) as f32 * d + m;
        }
    }
}

/// The reference dot product of one weight row and one activation row,
/// ggml's `ggml_vec_dot_q4_1_q8_1` generic code.
pub fn dot_scalar(x: &[BlockQ4_1], y: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            let lo = (x.qs[j] & 0x0f) as i32;
            let hi = (x.qs[j] >> 4) as i32;
            sumi += lo * y.qs[j] as i32 + hi * y.qs[j + QK / 2] as i32;
        }
        sum += (f16::to_f32(x.d) * y.d) * sumi as f32 + f16::to_f32(x.m) * y.s;
    }
    sum
}

/// `out[j * r + i] = dot(row j of w, row i of acts)`; see
/// [`super::gemm_tile`].
pub fn gemm_tile(w: &[BlockQ4_1], kb: usize, acts: &[BlockQ8], r: usize, out: &mut [f32]) {
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

    use super::{BlockQ4_1, BlockQ8};

    /// `R` activation rows against every weight row. Per block, like
    /// ggml: unpack the nibbles to 32 bytes, `maddubs` against the int8
    /// activations, widen to f32 and accumulate scaled by d·dy; the m·s
    /// terms are summed apart.
    ///
    /// # Safety
    /// Needs AVX2, FMA and F16C; `acts` holds `R * kb` blocks, `w` a
    /// multiple of `kb`, `out` at least `R` per weight row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile<const R: usize>(
        w: &[BlockQ4_1],
        kb: usize,
        acts: &[BlockQ8],
        out: &mut [f32],
    ) {
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        for (j, row) in w.chunks_exact(kb).enumerate() {
            let mut acc = [_mm256_setzero_ps(); R];
            let mut acc_ms = [_mm_setzero_ps(); R];
            for (b, x) in row.iter().enumerate() {
                // [d, m] of the weight block, widened from f16.
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(
                    (x.d as u32 | ((x.m as u32) << 16)) as i32,
                ));
                // SAFETY: `qs` is 16 bytes; unaligned load.
                let raw = unsafe { _mm_loadu_si128(x.qs.as_ptr().cast()) };
                let qx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
                for (r, (acc, acc_ms)) in acc.iter_mut().zip(acc_ms.iter_mut()).enumerate() {
                    // SAFETY: acts has R * kb blocks and b < kb.
                    let y = unsafe { acts.get_unchecked(r * kb + b) };
                    // [dy, s] of the activation block: its first 8 bytes.
                    // SAFETY: BlockQ8 starts with two f32; unaligned load of 8 bytes.
                    let ds =
                        _mm_castsi128_ps(unsafe { _mm_loadl_epi64((y as *const BlockQ8).cast()) });
                    let prod = _mm_mul_ps(dm, ds); // [d·dy, m·s, 0, 0]
                    *acc_ms = _mm_add_ps(*acc_ms, prod);
                    // SAFETY: `qs` is 32 bytes; unaligned load.
                    let qy = unsafe { _mm256_loadu_si256(y.qs.as_ptr().cast()) };
                    let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), ones);
                    *acc = _mm256_fmadd_ps(
                        _mm256_broadcastss_ps(prod),
                        _mm256_cvtepi32_ps(pairs),
                        *acc,
                    );
                }
            }
            for r in 0..R {
                let ms = _mm_cvtss_f32(_mm_movehdup_ps(acc_ms[r]));
                // SAFETY: out holds R values per weight row (caller's contract).
                unsafe { *out.get_unchecked_mut(j * R + r) = super::super::hsum256(acc[r]) + ms };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row;
    use crate::candle::quant::tests::{random_blocks_q4_1, random_row};

    #[test]
    fn simd_tiles_equal_the_scalar_reference() {
        for (seed, kb) in [(1u64, 1usize), (2, 2), (3, 18), (4, 48)] {
            let rows = 7;
            let w = random_blocks_q4_1(rows * kb, seed);
            for r in 1..=4 {
                let mut acts = vec![BlockQ8::default(); r * kb];
                for (i, chunk) in acts.chunks_exact_mut(kb).enumerate() {
                    quantize_row(&random_row(kb * QK, seed * 10 + i as u64), chunk);
                }
                let mut out = vec![0f32; rows * r];
                gemm_tile(&w, kb, &acts, r, &mut out);
                for j in 0..rows {
                    for i in 0..r {
                        let want =
                            dot_scalar(&w[j * kb..(j + 1) * kb], &acts[i * kb..(i + 1) * kb]);
                        let got = out[j * r + i];
                        let scale = abs_dot(&w[j * kb..(j + 1) * kb], &acts[i * kb..]);
                        assert!(
                            (got - want).abs() <= 1e-5 * scale.max(1.0),
                            "kb {kb} r {r} row {j} act {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// The dot product's sum of absolute terms: the scale of its rounding error.
    fn abs_dot(x: &[BlockQ4_1], y: &[BlockQ8]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(x, y)| {
                let sumi: i32 = (0..QK / 2)
                    .map(|j| {
                        (x.qs[j] & 0x0f) as i32 * (y.qs[j] as i32).abs()
                            + (x.qs[j] >> 4) as i32 * (y.qs[j + QK / 2] as i32).abs()
                    })
                    .sum();
                (f16::to_f32(x.d) * y.d).abs() * sumi as f32 + (f16::to_f32(x.m) * y.s).abs()
            })
            .sum()
    }

    #[test]
    fn dot_equals_the_dequantized_product() {
        // Against plain f32 arithmetic on the dequantized values: catches a
        // wrong nibble order or a dropped minimum, which the SIMD/scalar
        // comparison alone would not if both were wrong the same way.
        let kb = 4;
        let w = random_blocks_q4_1(kb, 9);
        let x = random_row(kb * QK, 10);
        let mut acts = vec![BlockQ8::default(); kb];
        quantize_row(&x, &mut acts);
        let mut wf = vec![0f32; kb * QK];
        for (b, chunk) in w.iter().zip(wf.chunks_exact_mut(QK)) {
            b.dequantize(chunk);
        }
        let exact: f32 = wf.iter().zip(&x).map(|(a, b)| a * b).sum();
        let mut out = [0f32];
        gemm_tile(&w, kb, &acts, 1, &mut out);
        let norm: f32 = wf.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
        assert!(
            (out[0] - exact).abs() < 0.02 * norm,
            "{} vs {exact}",
            out[0]
        );
    }
}

#[cfg(test)]
mod candle_tests {
    use super::*;
    use crate::candle::quant::quantize_row;
    use crate::candle::quant::tests::random_row;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    /// Same bytes through Candle's Q4_1 matmul and ours. They differ only
    /// in how the activation block's s = d·Σq is rounded (Candle rounds Σq
    /// to f16 first, ggml and we do not), a few parts in 10⁴ of the sum.
    #[test]
    fn rows_agree_with_candles_q4_1_matmul() {
        let (n, k) = (16usize, 576usize);
        let w: Vec<f32> = random_row(n * k, 3).iter().map(|v| v * 0.1).collect();
        let qt = QTensor::quantize(
            &Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap(),
            GgmlDType::Q4_1,
        )
        .unwrap();
        let blocks: Vec<BlockQ4_1> = qt
            .data()
            .unwrap()
            .chunks_exact(20)
            .map(|c| BlockQ4_1 {
                d: u16::from_le_bytes([c[0], c[1]]),
                m: u16::from_le_bytes([c[2], c[3]]),
                qs: c[4..20].try_into().unwrap(),
            })
            .collect();
        let wd: Vec<f32> = qt
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let x = random_row(k, 7);
        let xt = Tensor::from_vec(x.clone(), (1, k), &Device::Cpu).unwrap();
        let candle: Vec<f32> = QMatMul::from_qtensor(qt)
            .unwrap()
            .forward(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut acts = vec![BlockQ8::default(); k / QK];
        quantize_row(&x, &mut acts);
        let mut ours = vec![0f32; n];
        gemm_tile(&blocks, k / QK, &acts, 1, &mut ours);
        for j in 0..n {
            let abs: f32 = (0..k).map(|i| (wd[j * k + i] * x[i]).abs()).sum();
            let exact: f32 = (0..k).map(|i| wd[j * k + i] * x[i]).sum();
            assert!(
                (ours[j] - candle[j]).abs() <= 2e-3 * abs,
                "row {j}: {} vs candle {}",
                ours[j],
                candle[j]
            );
            // Both are int8 approximations of the exact product.
            assert!(
                (ours[j] - exact).abs() <= 1e-2 * abs,
                "row {j}: {} vs exact {exact}",
                ours[j]
            );
        }
    }
}
