//! Q5_0 weights (32 five-bit values with a scale, centred on 16) against
//! Q8_0 activations: ggml's `ggml_vec_dot_q5_0_q8_0`. llama.cpp writes it
//! where a K-quant does not fit (widths that are not a multiple of 256,
//! such as Qwen2.5-0.5B's 896).

use super::q8_0::dot_block;
use super::{f16, Block, BlockQ8, QK};

/// One GGUF Q5_0 block: value = d·(q − 16), q in 0..32. The low four bits
/// are packed as in Q4_0; bit `j` of `qh` (little-endian) is element `j`'s
/// fifth bit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ5_0 {
    pub d: u16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// The 32 five-bit values of `qs` and `qh` (shared with Q5_1).
pub(super) fn five_bits(qs: &[u8; QK / 2], qh: [u8; 4]) -> [u8; QK] {
    let h = u32::from_le_bytes(qh);
    let mut v = [0u8; QK];
    for (j, &q) in qs.iter().enumerate() {
        v[j] = (q & 0x0f) | (((h >> j) & 1) << 4) as u8;
        v[j + QK / 2] = (q >> 4) | (((h >> (j + 16)) & 1) << 4) as u8;
    }
    v
}

impl Block for BlockQ5_0 {
    type Act = BlockQ8;
    const VALUES: usize = QK;
    avx2_tiles!(vnni);

    fn dequantize(&self, out: &mut [f32]) {
        let d = f16::to_f32(self.d);
        for (o, q) in out.iter_mut().zip(five_bits(&self.qs, self.qh)) {
            *o = (q as i32 - 16) as f32 * d;
        }
    }

    fn dot_scalar(x: &[Self], y: &[BlockQ8]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(x, y)| {
                let values = five_bits(&x.qs, x.qh).map(|q| q as i8 - 16);
                dot_block(&values, x.d, y)
            })
            .sum()
    }
}

/// The block's 32 values as signed bytes, q − 16: the nibble, with 0xF0
/// or-ed in where the fifth bit is clear (ggml's trick).
///
/// # Safety
/// Needs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpack(x: &BlockQ5_0) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's CPU has AVX2.
    let (lo, hi) = unsafe {
        (
            super::tiles::nibbles(&x.qs),
            super::tiles::bits_to_bytes(u32::from_le_bytes(x.qh)),
        )
    };
    _mm256_or_si256(lo, _mm256_andnot_si256(hi, _mm256_set1_epi8(0xf0u8 as i8)))
}

signed_tile!(BlockQ5_0, super::unpack);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row;
    use crate::candle::quant::tests::{check_kernels, random_bytes, random_row, small_scale};

    fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ5_0> {
        let bytes = random_bytes(n * 20, seed);
        let scales = random_row(n, seed + 1);
        (0..n)
            .map(|b| {
                let r = &bytes[b * 20..(b + 1) * 20];
                BlockQ5_0 {
                    d: small_scale(scales[b]),
                    qh: r[..4].try_into().unwrap(),
                    qs: r[4..].try_into().unwrap(),
                }
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_each_other_and_the_dequantized_product() {
        check_kernels(&random_blocks, quantize_row);
    }
}
