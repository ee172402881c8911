//! Q8_0 weights (32 int8 values with a scale) against Q8_0 activations:
//! ggml's `ggml_vec_dot_q8_0_q8_0`.

use super::{f16, Block, BlockQ8, QK};

/// One GGUF Q8_0 block: value = d·q.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_0 {
    pub d: u16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

impl Block for BlockQ8_0 {
    type Act = BlockQ8;
    const VALUES: usize = QK;
    avx2_tiles!(vnni);

    fn dequantize(&self, out: &mut [f32]) {
        let d = f16::to_f32(self.d);
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }

    fn dot_scalar(x: &[Self], y: &[BlockQ8]) -> f32 {
        x.iter().zip(y).map(|(x, y)| dot_block(&x.qs, x.d, y)).sum()
    }
}

/// One block's reference dot product for the types whose values are
/// signed bytes times an f16 scale `d` (Q4_0, Q5_0, Q8_0).
pub(super) fn dot_block(values: &[i8; QK], d: u16, y: &BlockQ8) -> f32 {
    let sumi: i32 = values
        .iter()
        .zip(&y.qs)
        .map(|(&a, &b)| a as i32 * b as i32)
        .sum();
    sumi as f32 * (f16::to_f32(d) * y.d)
}

/// The block's 32 values as signed bytes.
///
/// # Safety
/// Needs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpack(x: &BlockQ8_0) -> std::arch::x86_64::__m256i {
    // SAFETY: `qs` is 32 bytes; unaligned load.
    unsafe { std::arch::x86_64::_mm256_loadu_si256(x.qs.as_ptr().cast()) }
}

signed_tile!(BlockQ8_0, super::unpack);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::candle::quant::quantize_row;
    use crate::candle::quant::tests::{check_kernels, random_row};

    pub fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ8_0> {
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
    fn kernels_agree_with_each_other_and_the_dequantized_product() {
        check_kernels(&random_blocks, quantize_row);
    }
}
