//! Weight matrices mapped straight from the GGUF file and the matmuls over
//! them.
//!
//! Every GGUF type the hubs publish for llama-family models has its own
//! kernel here, an AVX2/FMA/F16C port of ggml's dot product chosen at run
//! time with a scalar reference beside it: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0
//! weights against activations quantized to 32-value int8 blocks, the
//! K-quants Q4_K, Q5_K and Q6_K (which Q4_K_M/Q5_K_M files mix) against
//! 256-value int8 super-blocks, and f16/f32 against f32. Each kernel takes
//! up to four activation rows per pass over a weight row, so prompt
//! processing unpacks each weight block once for four tokens.
//!
//! **Architecture Invariant:** no weight matrix is ever copied or widened
//! to f32. Matrices are views into the file's memory map (see
//! [`matrix`]); an embedding row is dequantized on lookup.

#[macro_use]
mod tiles;
pub mod acts;
pub mod f16;
mod matmul;
pub mod matrix;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;

#[cfg(test)]
pub use acts::{quantize_row, quantize_row_k};
pub use acts::{ActRow, Acts, BlockQ8, BlockQ8K};
pub use matmul::{matmul, Job};
pub use matrix::{Mapped, Matrix};

#[cfg(target_arch = "x86_64")]
pub(crate) use super::simd::hsum256;
#[cfg(target_arch = "x86_64")]
use super::simd::{has_avx2, has_vnni};

/// Values per 32-value block.
pub const QK: usize = 32;
/// Values per K-quant super-block.
pub const QK_K: usize = 256;

/// A GGUF weight block type with a kernel here.
pub trait Block: Copy + Send + Sync + 'static {
    /// The activation block it is multiplied with.
    type Act: ActRow;
    /// Values per block.
    const VALUES: usize;
    /// The AVX2 tile kernels for 1 to 4 activation rows.
    #[cfg(target_arch = "x86_64")]
    const AVX2: [Avx2Tile<Self>; 4];
    /// The same tiles with AVX-512 VNNI's one-instruction byte dot
    /// product, where the type has them; they give the AVX2 tiles'
    /// results exactly.
    #[cfg(target_arch = "x86_64")]
    const VNNI: Option<[Avx2Tile<Self>; 4]> = None;
    /// The block's values as f32 (`out` is `VALUES` long).
    fn dequantize(&self, out: &mut [f32]);
    /// The reference dot product of one weight row with one activation
    /// row, ggml's generic code.
    fn dot_scalar(w: &[Self], a: &[Self::Act]) -> f32;
}

/// An AVX2 tile kernel: `r` activation rows (the array index + 1) against
/// every weight row.
#[cfg(target_arch = "x86_64")]
pub type Avx2Tile<B> = unsafe fn(&[B], usize, &[<B as Block>::Act], &mut [f32]);

/// `out[j * r + i] = dot(row j of w, row i of acts)` for every row of `w`
/// (`kb` blocks each) and the `r` ≤ 4 activation rows in `acts`: the AVX2
/// tiles when the CPU has them, else the scalar reference row by row.
pub fn gemm_tile<B: Block>(w: &[B], kb: usize, acts: &[B::Act], r: usize, out: &mut [f32]) {
    assert!((1..=4).contains(&r) && acts.len() == r * kb && w.len().is_multiple_of(kb));
    assert!(out.len() >= w.len() / kb * r);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        let tiles = match B::VNNI {
            Some(vnni) if has_vnni() => vnni,
            _ => B::AVX2,
        };
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above), and
        // AVX-512 VNNI and VL where the VNNI tiles are chosen; the asserts
        // above guarantee every block the kernel reads exists.
        unsafe { tiles[r - 1](w, kb, acts, out) };
        return;
    }
    for (j, row) in w.chunks_exact(kb).enumerate() {
        for (i, act) in acts.chunks_exact(kb).enumerate() {
            out[j * r + i] = B::dot_scalar(row, act);
        }
    }
}

#[cfg(test)]
mod candle_tests;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) with a few outliers, like activations.
    pub fn random_row(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let v = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
                if i % 29 == 3 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// Random bytes, for blocks whose every bit pattern is meaningful.
    pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        random_row(n, seed)
            .iter()
            .map(|v| ((v + 1.0) * 127.9) as u8)
            .collect()
    }

    /// A small f16 scale (bits), never zero.
    pub fn small_scale(v: f32) -> u16 {
        f16::from_f32(v.abs() * 0.05 + 1e-4)
    }

    /// Checks a block type's kernels three ways on `rows` random weight
    /// rows of `kb` blocks: the SIMD tiles against the scalar reference
    /// (tight), and the scalar reference against f32 arithmetic on the
    /// dequantized weights and unquantized activations (loose: the
    /// activations' int8 rounding). The second catches a wrong bit order,
    /// which the first would not if both kernels shared it.
    pub fn check_kernels<B: Block>(
        blocks: &dyn Fn(usize, u64) -> Vec<B>,
        quantize: fn(&[f32], &mut [B::Act]),
    ) {
        for (seed, kb) in [(1u64, 1usize), (2, 3), (3, 8)] {
            let rows = 5;
            let n = kb * B::VALUES;
            let w = blocks(rows * kb, seed);
            let mut wf = vec![0f32; rows * n];
            for (b, out) in w.iter().zip(wf.chunks_exact_mut(B::VALUES)) {
                b.dequantize(out);
            }
            for r in 1..=4 {
                let xs: Vec<Vec<f32>> = (0..r)
                    .map(|i| random_row(n, seed * 10 + i as u64))
                    .collect();
                let mut acts = vec![B::Act::default(); r * kb];
                for (x, chunk) in xs.iter().zip(acts.chunks_exact_mut(kb)) {
                    quantize(x, chunk);
                }
                let mut out = vec![0f32; rows * r];
                gemm_tile(&w, kb, &acts, r, &mut out);
                #[cfg(target_arch = "x86_64")]
                if let (Some(vnni), true) = (B::VNNI, has_vnni()) {
                    let mut avx2 = vec![0f32; rows * r];
                    // SAFETY: has_vnni implies AVX2, FMA and F16C; the
                    // shapes are those gemm_tile checked.
                    unsafe { B::AVX2[r - 1](&w, kb, &acts, &mut avx2) };
                    let mut with_vnni = vec![0f32; rows * r];
                    // SAFETY: as above, and the CPU has AVX-512 VNNI and VL.
                    unsafe { vnni[r - 1](&w, kb, &acts, &mut with_vnni) };
                    assert_eq!(avx2, with_vnni, "kb {kb} r {r}: VNNI differs from AVX2");
                }
                for j in 0..rows {
                    let wrow = &wf[j * n..(j + 1) * n];
                    for (i, x) in xs.iter().enumerate() {
                        let want =
                            B::dot_scalar(&w[j * kb..(j + 1) * kb], &acts[i * kb..(i + 1) * kb]);
                        let exact: f32 = wrow.iter().zip(x).map(|(a, b)| a * b).sum();
                        let norm: f32 = wrow.iter().zip(x).map(|(a, b)| (a * b).abs()).sum();
                        let got = out[j * r + i];
                        assert!(
                            (got - want).abs() <= 1e-5 * norm.max(1e-3),
                            "kb {kb} r {r} row {j} act {i}: simd {got} vs scalar {want}"
                        );
                        assert!(
                            (want - exact).abs() <= 0.02 * norm,
                            "kb {kb} row {j} act {i}: scalar {want} vs dequantized {exact} (norm {norm})"
                        );
                        assert_ne!(norm, 0.0);
                    }
                }
            }
        }
    }
}
