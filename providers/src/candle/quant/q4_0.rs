//! Q4_0 weights (32 four-bit values with a scale, centred on 8) against
//! Q8_0 activations: ggml's `ggml_vec_dot_q4_0_q8_0`.

use super::q8_0::dot_block;
use super::{f16, Block, BlockQ8, QK};

/// One GGUF Q4_0 block: value = d·(q − 8), q in 0..16; byte `j` of `qs`
/// holds element `j` in its low nibble and element `j + 16` in its high.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_0 {
    pub d: u16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

impl BlockQ4_0 {
    fn values(&self) -> [i8; QK] {
        let mut v = [0i8; QK];
        for (j, &q) in self.qs.iter().enumerate() {
            v[j] = (q & 0x0f) as i8 - 8;
            v[j + QK / 2] = (q >> 4) as i8 - 8;
        }
        v
    }
}

impl Block for BlockQ4_0 {
    type Act = BlockQ8;
    const VALUES: usize = QK;
    avx2_tiles!(vnni);

    fn dequantize(&self, out: &mut [f32]) {
        let d = f16::to_f32(self.d);
        for (o, q) in out.iter_mut().zip(self.values()) {
            *o = q as f32 * d;
        }
    }

    fn dot_scalar(x: &[Self], y: &[BlockQ8]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(x, y)| dot_block(&x.values(), x.d, y))
            .sum()
    }
}

/// The block's 32 values as signed bytes, q − 8.
///
/// # Safety
/// Needs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpack(x: &BlockQ4_0) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's CPU has AVX2.
    _mm256_sub_epi8(unsafe { super::tiles::nibbles(&x.qs) }, _mm256_set1_epi8(8))
}

signed_tile!(BlockQ4_0, super::unpack);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row;
    use crate::candle::quant::tests::{check_kernels, random_bytes, random_row, small_scale};

    pub fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ4_0> {
        let bytes = random_bytes(n * 16, seed);
        let scales = random_row(n, seed + 1);
        (0..n)
            .map(|b| BlockQ4_0 {
                d: small_scale(scales[b]),
                qs: bytes[b * 16..(b + 1) * 16].try_into().unwrap(),
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_each_other_and_the_dequantized_product() {
        check_kernels(&random_blocks, quantize_row);
    }
}
