//! Q5_1 weights (32 five-bit values with a scale and a minimum) against
//! Q8_1 activations: ggml's `ggml_vec_dot_q5_1_q8_1`, the fallback of
//! Q5_K_M files for widths that are not a multiple of 256.

use super::q5_0::five_bits;
use super::{f16, Block, BlockQ8, QK};

/// One GGUF Q5_1 block: value = d·q + m, q in 0..32, bits packed as Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ5_1 {
    pub d: u16,
    pub m: u16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

impl Block for BlockQ5_1 {
    type Act = BlockQ8;
    const VALUES: usize = QK;
    avx2_tiles!(vnni);

    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (f16::to_f32(self.d), f16::to_f32(self.m));
        for (o, q) in out.iter_mut().zip(five_bits(&self.qs, self.qh)) {
            *o = q as f32 * d + m;
        }
    }

    fn dot_scalar(x: &[Self], y: &[BlockQ8]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(x, y)| {
                let sumi: i32 = five_bits(&x.qs, x.qh)
                    .iter()
                    .zip(&y.qs)
                    .map(|(&a, &b)| a as i32 * b as i32)
                    .sum();
                (f16::to_f32(x.d) * y.d) * sumi as f32 + f16::to_f32(x.m) * y.s
            })
            .sum()
    }
}

/// The block's 32 values as unsigned bytes: the nibble, with 0x10 or-ed
/// in where the fifth bit is set.
///
/// # Safety
/// Needs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpack(x: &BlockQ5_1) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's CPU has AVX2.
    let (lo, hi) = unsafe {
        (
            super::tiles::nibbles(&x.qs),
            super::tiles::bits_to_bytes(u32::from_le_bytes(x.qh)),
        )
    };
    _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x10)))
}

min_tile!(BlockQ5_1, super::unpack);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row;
    use crate::candle::quant::tests::{check_kernels, random_bytes, random_row, small_scale};

    fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ5_1> {
        let bytes = random_bytes(n * 20, seed);
        let scales = random_row(2 * n, seed + 1);
        (0..n)
            .map(|b| {
                let r = &bytes[b * 20..(b + 1) * 20];
                BlockQ5_1 {
                    d: small_scale(scales[2 * b]),
                    m: f16::from_f32(scales[2 * b + 1] * 0.3),
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
