//! Q4_K weights against Q8_K activations: ggml's `ggml_vec_dot_q4_K_q8_K`.
//! Q4_K_M files, the most common download, hold most matrices in it.

use super::{f16, Block, BlockQ8K, QK_K};

/// One GGUF Q4_K super-block of 256 values: eight sub-blocks of 32, each
/// with a 6-bit scale and a 6-bit minimum (packed in `scales`), times the
/// super-block's f16 `d` and `dmin`: value = d·sc·q − dmin·m. In each 64
/// values, the low nibbles of 32 bytes of `qs` are the first 32 values and
/// the high nibbles the next 32.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// The eight 6-bit scales and minimums packed in 12 bytes (ggml's
/// `get_scale_min_k4`, shared with Q5_K).
pub(super) fn scales_mins(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
            m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, m)
}

/// Σ over the sub-blocks of `mins[s]` × the activations' sum over those 32
/// values (the K-quants' minimum term, before scaling).
pub(super) fn min_term(mins: &[u8; 8], y: &BlockQ8K) -> i32 {
    (0..8)
        .map(|s| mins[s] as i32 * (y.bsums[2 * s] as i32 + y.bsums[2 * s + 1] as i32))
        .sum()
}

impl BlockQ4K {
    /// The 256 unsigned 4-bit values in order.
    fn values(&self) -> [u8; QK_K] {
        let mut v = [0u8; QK_K];
        for c in 0..4 {
            for l in 0..32 {
                let q = self.qs[32 * c + l];
                v[64 * c + l] = q & 0x0f;
                v[64 * c + 32 + l] = q >> 4;
            }
        }
        v
    }
}

/// Dequantizes unsigned K-quant values with per-32 scales and minimums.
pub(super) fn dequantize_with_mins(
    v: &[u8; QK_K],
    d: u16,
    dmin: u16,
    s: &[u8; 12],
    out: &mut [f32],
) {
    let (sc, m) = scales_mins(s);
    let (d, dmin) = (f16::to_f32(d), f16::to_f32(dmin));
    for (i, (o, &q)) in out.iter_mut().zip(v.iter()).enumerate() {
        *o = d * sc[i / 32] as f32 * q as f32 - dmin * m[i / 32] as f32;
    }
}

/// The reference dot product for unsigned K-quant values with per-32
/// scales and minimums (Q4_K and Q5_K).
pub(super) fn dot_with_mins(v: &[u8; QK_K], d: u16, dmin: u16, s: &[u8; 12], y: &BlockQ8K) -> f32 {
    let (sc, m) = scales_mins(s);
    let sumi: i32 = (0..8)
        .map(|s| {
            let part: i32 = (32 * s..32 * s + 32)
                .map(|i| v[i] as i32 * y.qs[i] as i32)
                .sum();
            sc[s] as i32 * part
        })
        .sum();
    f16::to_f32(d) * y.d * sumi as f32 - f16::to_f32(dmin) * y.d * min_term(&m, y) as f32
}

impl Block for BlockQ4K {
    type Act = BlockQ8K;
    const VALUES: usize = QK_K;
    avx2_tiles!();

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_with_mins(&self.values(), self.d, self.dmin, &self.scales, out);
    }

    fn dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(x, y)| dot_with_mins(&x.values(), x.d, x.dmin, &x.scales, y))
            .sum()
    }
}

/// 64 values' unsigned 4-bit values, the first 32 and the next 32.
///
/// # Safety
/// Needs AVX2; `c` < 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpack(
    x: &BlockQ4K,
    c: usize,
) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0f);
    // SAFETY: `qs` is 128 bytes and c < 4; unaligned load.
    let bits = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast()) };
    (
        _mm256_and_si256(bits, low),
        _mm256_and_si256(_mm256_srli_epi16(bits, 4), low),
    )
}

mins_k_tile!(BlockQ4K, super::unpack);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row_k;
    use crate::candle::quant::tests::{check_kernels, random_bytes, random_row, small_scale};

    fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ4K> {
        let bytes = random_bytes(n * 140, seed);
        let scales = random_row(2 * n, seed + 1);
        (0..n)
            .map(|b| {
                let r = &bytes[b * 140..(b + 1) * 140];
                BlockQ4K {
                    d: small_scale(scales[2 * b] * 0.1),
                    dmin: small_scale(scales[2 * b + 1] * 0.1),
                    scales: r[..12].try_into().unwrap(),
                    qs: r[12..].try_into().unwrap(),
                }
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_each_other_and_the_dequantized_product() {
        check_kernels(&random_blocks, quantize_row_k);
    }
}
