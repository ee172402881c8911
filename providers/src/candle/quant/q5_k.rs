//! Q5_K weights against Q8_K activations: ggml's `ggml_vec_dot_q5_K_q8_K`
//! (Q5_K_M files).

use super::q4_k::{dequantize_with_mins, dot_with_mins};
use super::{Block, BlockQ8K, QK_K};

/// One GGUF Q5_K super-block: Q4_K's layout plus a fifth bit per value.
/// For value `64·c + l` (l < 32) the bit is bit `2c` of `qh[l]`; for
/// `64·c + 32 + l` it is bit `2c + 1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

impl BlockQ5K {
    /// The 256 unsigned 5-bit values in order.
    fn values(&self) -> [u8; QK_K] {
        let mut v = [0u8; QK_K];
        for c in 0..4 {
            for l in 0..32 {
                let (q, h) = (self.qs[32 * c + l], self.qh[l]);
                v[64 * c + l] = (q & 0x0f) | (((h >> (2 * c)) & 1) << 4);
                v[64 * c + 32 + l] = (q >> 4) | (((h >> (2 * c + 1)) & 1) << 4);
            }
        }
        v
    }
}

impl Block for BlockQ5K {
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

/// 64 values' unsigned 5-bit values, the first 32 and the next 32: the
/// nibbles with 16 or-ed in where the fifth bit is set.
///
/// # Safety
/// Needs AVX2; `c` < 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpack(
    x: &BlockQ5K,
    c: usize,
) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0f);
    let sixteen = _mm256_set1_epi8(0x10);
    // SAFETY: `qs` is 128 bytes, `qh` 32 and c < 4; unaligned loads.
    let (bits, hbits) = unsafe {
        (
            _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast()),
            _mm256_loadu_si256(x.qh.as_ptr().cast()),
        )
    };
    let fifth = |bit: usize| {
        let mask = _mm256_set1_epi8((1u8 << bit) as i8);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, mask), mask);
        _mm256_and_si256(set, sixteen)
    };
    (
        _mm256_or_si256(_mm256_and_si256(bits, low), fifth(2 * c)),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(bits, 4), low),
            fifth(2 * c + 1),
        ),
    )
}

mins_k_tile!(BlockQ5K, super::unpack);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row_k;
    use crate::candle::quant::tests::{check_kernels, random_bytes, random_row, small_scale};

    fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ5K> {
        let bytes = random_bytes(n * 172, seed);
        let scales = random_row(2 * n, seed + 1);
        (0..n)
            .map(|b| {
                let r = &bytes[b * 172..(b + 1) * 172];
                BlockQ5K {
                    d: small_scale(scales[2 * b] * 0.1),
                    dmin: small_scale(scales[2 * b + 1] * 0.1),
                    scales: r[..12].try_into().unwrap(),
                    qh: r[12..44].try_into().unwrap(),
                    qs: r[44..].try_into().unwrap(),
                }
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_each_other_and_the_dequantized_product() {
        check_kernels(&random_blocks, quantize_row_k);
    }
}
