//! Q4_1 weights (32 four-bit values with a scale and a minimum) against
//! Q8_1 activations: the kernel behind nearly every matmul of the default
//! model, ggml's `ggml_vec_dot_q4_1_q8_1`.

use super::{f16, Block, BlockQ8, QK};

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

impl Block for BlockQ4_1 {
    type Act = BlockQ8;
    const VALUES: usize = QK;
    avx2_tiles!(vnni);

    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (f16::to_f32(self.d), f16::to_f32(self.m));
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = (q & 0x0f) as f32 * d + m;
            out[j + QK / 2] = (q >> 4) as f32 * d + m;
        }
    }

    /// ggml's `ggml_vec_dot_q4_1_q8_1` generic code.
    fn dot_scalar(x: &[Self], y: &[BlockQ8]) -> f32 {
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
}

/// The block's 32 values as unsigned bytes.
///
/// # Safety
/// Needs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpack(x: &BlockQ4_1) -> std::arch::x86_64::__m256i {
    // SAFETY: the caller's CPU has AVX2.
    unsafe { super::tiles::nibbles(&x.qs) }
}

min_tile!(BlockQ4_1, super::unpack);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::quant::quantize_row;
    use crate::candle::quant::tests::{check_kernels, random_bytes, random_row, small_scale};

    fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ4_1> {
        let bytes = random_bytes(n * 16, seed);
        let scales = random_row(2 * n, seed + 1);
        (0..n)
            .map(|b| BlockQ4_1 {
                d: small_scale(scales[2 * b]),
                m: f16::from_f32(scales[2 * b + 1] * 0.3),
                qs: bytes[b * 16..(b + 1) * 16].try_into().unwrap(),
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_each_other_and_the_dequantized_product() {
        check_kernels(&random_blocks, quantize_row);
    }
}
