//! Q6_K weights against Q8_K activations: ggml's `ggml_vec_dot_q6_K_q8_K`.
//! Q4_K_M and Q5_K_M files keep the output layer and some V and FFN-down
//! matrices in it.

use super::{f16, Block, BlockQ8K, QK_K};

/// One GGUF Q6_K super-block: 256 six-bit values centred on 32, a signed
/// 8-bit scale per 16 values, times the f16 `d`: value = d·sc·(q − 32).
/// Per 128 values `c`: the low four bits of values `l`, `32 + l` are the
/// low nibbles of `ql[64c + l]`, `ql[64c + 32 + l]`, of values `64 + l`,
/// `96 + l` their high nibbles; bits 0–1, 2–3, 4–5, 6–7 of `qh[32c + l]`
/// are the top two bits of the four.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    /// The 256 values, q − 32.
    fn values(&self) -> [i8; QK_K] {
        let mut v = [0i8; QK_K];
        for c in 0..2 {
            let (ql, qh) = (&self.ql[64 * c..], &self.qh[32 * c..]);
            let v = &mut v[128 * c..];
            for l in 0..32 {
                let h = qh[l];
                v[l] = ((ql[l] & 0x0f) | ((h & 3) << 4)) as i8 - 32;
                v[32 + l] = ((ql[32 + l] & 0x0f) | (((h >> 2) & 3) << 4)) as i8 - 32;
                v[64 + l] = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
                v[96 + l] = ((ql[32 + l] >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        v
    }
}

impl Block for BlockQ6K {
    type Act = BlockQ8K;
    const VALUES: usize = QK_K;
    avx2_tiles!();

    fn dequantize(&self, out: &mut [f32]) {
        let d = f16::to_f32(self.d);
        for (i, (o, q)) in out.iter_mut().zip(self.values()).enumerate() {
            *o = d * self.scales[i / 16] as f32 * q as f32;
        }
    }

    fn dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(x, y)| {
                let v = x.values();
                let sumi: i32 = (0..16)
                    .map(|s| {
                        let part: i32 = (16 * s..16 * s + 16)
                            .map(|i| v[i] as i32 * y.qs[i] as i32)
                            .sum();
                        x.scales[s] as i32 * part
                    })
                    .sum();
                f16::to_f32(x.d) * y.d * sumi as f32
            })
            .sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::{hsum256, BlockQ8K};
    use super::BlockQ6K;

    /// `R` activation rows against every weight row. The six-bit values
    /// go through `maddubs` unsigned (0..64); the −32 offset is taken off
    /// once per super-block from the activation's partial sums,
    /// 32·Σ sc·bsum, instead of per value.
    ///
    /// # Safety
    /// Needs AVX2, FMA and F16C; `acts` holds `R * kb` blocks, `w` a
    /// multiple of `kb`, `out` at least `R` per weight row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile<const R: usize>(
        w: &[BlockQ6K],
        kb: usize,
        acts: &[BlockQ8K],
        out: &mut [f32],
    ) {
        let low = _mm256_set1_epi8(0x0f);
        let two = _mm256_set1_epi8(3);
        for (j, row) in w.chunks_exact(kb).enumerate() {
            let mut acc = [_mm256_setzero_ps(); R];
            for (b, x) in row.iter().enumerate() {
                let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(x.d as i32)));
                // SAFETY: `scales` is 16 bytes; unaligned load.
                let sc16 =
                    _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) });
                let mut sumi = [_mm256_setzero_si256(); R];
                for c in 0..2 {
                    // SAFETY: `ql` is 128 and `qh` 64 bytes, c < 2; unaligned loads.
                    let (l0, l1, h) = unsafe {
                        (
                            _mm256_loadu_si256(x.ql.as_ptr().add(64 * c).cast()),
                            _mm256_loadu_si256(x.ql.as_ptr().add(64 * c + 32).cast()),
                            _mm256_loadu_si256(x.qh.as_ptr().add(32 * c).cast()),
                        )
                    };
                    let top = |shift: i32| {
                        let bits =
                            _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(shift)), two);
                        _mm256_slli_epi16(bits, 4)
                    };
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(l0, low), top(0)),
                        _mm256_or_si256(_mm256_and_si256(l1, low), top(2)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low), top(4)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low), top(6)),
                    ];
                    for (k, q) in q.iter().enumerate() {
                        let s = 8 * c + 2 * k;
                        let scale = _mm256_set_m128i(
                            _mm_set1_epi16(x.scales[s + 1] as i16),
                            _mm_set1_epi16(x.scales[s] as i16),
                        );
                        for (r, sumi) in sumi.iter_mut().enumerate() {
                            // SAFETY: acts has R * kb blocks and b < kb.
                            let y = unsafe { acts.get_unchecked(r * kb + b) };
                            // SAFETY: `qs` is 256 bytes, 128c + 32k < 256; unaligned load.
                            let qy = unsafe {
                                _mm256_loadu_si256(y.qs.as_ptr().add(128 * c + 32 * k).cast())
                            };
                            let p = _mm256_madd_epi16(scale, _mm256_maddubs_epi16(*q, qy));
                            *sumi = _mm256_add_epi32(*sumi, p);
                        }
                    }
                }
                for r in 0..R {
                    // SAFETY: acts has R * kb blocks and b < kb.
                    let y = unsafe { acts.get_unchecked(r * kb + b) };
                    // SAFETY: `bsums` is 16 i16 = 32 bytes; unaligned load.
                    let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
                    let offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
                    let total = _mm256_sub_epi32(sumi[r], offset);
                    acc[r] =
                        _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), _mm256_cvtepi32_ps(total), acc[r]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                // SAFETY: out holds R values per weight row (caller's contract).
                unsafe { *out.get_unchecked_mut(j * R + r) = hsum256(*acc) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row_k;
    use crate::candle::quant::tests::{check_kernels, random_bytes, random_row, small_scale};

    fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ6K> {
        let bytes = random_bytes(n * 208, seed);
        let scales = random_row(n, seed + 1);
        (0..n)
            .map(|b| {
                let r = &bytes[b * 208..(b + 1) * 208];
                BlockQ6K {
                    ql: r[..128].try_into().unwrap(),
                    qh: r[128..192].try_into().unwrap(),
                    scales: std::array::from_fn(|i| r[192 + i] as i8),
                    d: small_scale(scales[b] * 0.1),
                }
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_each_other_and_the_dequantized_product() {
        check_kernels(&random_blocks, quantize_row_k);
    }
}
