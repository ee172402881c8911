//! Weight matrices straight from the GGUF file and the matmuls over them.
//!
//! Candle's own quantized matmul (one op, one thread-pool barrier and a
//! scalar kernel per Q4_1 matmul) was 84% of the default model's time, so
//! the common GGUF types get their own SIMD kernels here: Q4_1 and Q8_0
//! weights against activations quantized once per row to int8 blocks, and
//! plain f32. Any other type (K-quants, f16, …) goes through Candle's
//! `QMatMul`, which has kernels for those.

pub mod f16;
pub mod q4_1;
pub mod q8_0;

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{Device, Module, Tensor};

use super::error::ModelError;
use super::pool::{Out, Pool};
use super::simd;
#[cfg(target_arch = "x86_64")]
use super::simd::has_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use super::simd::hsum256;
use q4_1::BlockQ4_1;
use q8_0::BlockQ8_0;

/// Values per quantization block.
pub const QK: usize = 32;
/// Weight rows per kernel call: small enough to stay in L1 while every
/// activation tile passes over them.
const CHUNK_ROWS: usize = 16;
/// Parallel items per thread and matrix: enough to balance the threads,
/// few enough that claiming them (an atomic each) stays cheap.
const ITEMS_PER_THREAD: usize = 8;
/// Activation rows sharing one pass over a weight row.
const TILE: usize = 4;

/// One activation block: 32 int8 values with scale `d` and `s` = d·Σq.
/// It serves as ggml's Q8_1 (for Q4_1 weights) and Q8_0 (for Q8_0
/// weights). The scales are kept as f32 values already rounded to f16, as
/// ggml stores them, so the kernels need no conversion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

/// Quantizes `x` (a multiple of 32 long) into int8 blocks, ggml's
/// `quantize_row_q8_1` reference: d = max|x|/127, q = round(x/d).
pub fn quantize_row(x: &[f32], out: &mut [BlockQ8]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        block.d = f16::round(d);
        block.s = f16::round(d * sum as f32);
    }
}

/// An AVX2 tile kernel: `r` activation rows (the array index + 1) against
/// every weight row.
#[cfg(target_arch = "x86_64")]
pub type Avx2Tile<B> = unsafe fn(&[B], usize, &[BlockQ8], &mut [f32]);

/// `out[j * r + i] = dot(row j of w, row i of acts)` for every row of `w`
/// (`kb` blocks each) and the `r` ≤ 4 activation rows in `acts`: the AVX2
/// `tiles` when the CPU has them, else `dot_scalar` row by row.
pub fn gemm_tile<B>(
    w: &[B],
    kb: usize,
    acts: &[BlockQ8],
    r: usize,
    out: &mut [f32],
    dot_scalar: fn(&[B], &[BlockQ8]) -> f32,
    #[cfg(target_arch = "x86_64")] tiles: [Avx2Tile<B>; 4],
) {
    assert!((1..=4).contains(&r) && acts.len() == r * kb && w.len() % kb == 0);
    assert!(out.len() >= w.len() / kb * r);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above), and
        // the asserts above guarantee every block the kernel reads exists.
        unsafe { tiles[r - 1](w, kb, acts, out) };
        return;
    }
    for (j, row) in w.chunks_exact(kb).enumerate() {
        for (i, act) in acts.chunks_exact(kb).enumerate() {
            out[j * r + i] = dot_scalar(row, act);
        }
    }
}

enum Data {
    Q4_1(Vec<BlockQ4_1>),
    Q8_0(Vec<BlockQ8_0>),
    /// An f32 (or dequantized) token embedding.
    F32(Vec<f32>),
    /// Any other GGUF type, through Candle.
    Candle(QMatMul),
}

/// A `rows × cols` weight matrix (`cols` is the input width).
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    data: Data,
}

/// Reads `n` plain-old-data values from the file at the reader's position.
///
/// # Safety
/// `T` must be `repr(C)` with no padding and valid for every bit pattern.
unsafe fn read_pod<T: Copy + Default, R: Read>(
    reader: &mut R,
    n: usize,
) -> std::io::Result<Vec<T>> {
    let mut v = vec![T::default(); n];
    // SAFETY: the caller guarantees T has no padding and accepts any bytes;
    // the byte view covers exactly the vector's initialised elements.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), n * std::mem::size_of::<T>())
    };
    reader.read_exact(bytes)?;
    Ok(v)
}

impl Matrix {
    /// Loads the 2-D tensor `name`. Types without a kernel here go to
    /// Candle, f32 included (its gemm beats a dot-product loop); with
    /// `dense_fallback` (the token embedding, whose rows are looked up) they
    /// are dequantized to f32 instead.
    pub fn load<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        name: &str,
        dense_fallback: bool,
    ) -> Result<Self, ModelError> {
        let info = content
            .tensor_infos
            .get(name)
            .ok_or_else(|| ModelError::Missing(name.to_owned()))?;
        let (rows, cols) = match info.shape.dims() {
            [rows, cols] => (*rows, *cols),
            dims => {
                return Err(ModelError::Invalid(format!(
                    "{name} has shape {dims:?}, not 2-D"
                )))
            }
        };
        let n = rows * cols;
        let seek =
            |reader: &mut R| reader.seek(SeekFrom::Start(content.tensor_data_offset + info.offset));
        let blocked = matches!(info.ggml_dtype, GgmlDType::Q4_1 | GgmlDType::Q8_0);
        if blocked && cols % QK != 0 {
            return Err(ModelError::Invalid(format!(
                "{name}: width {cols} is not a multiple of {QK}"
            )));
        }
        let data = match info.ggml_dtype {
            GgmlDType::Q4_1 => {
                seek(reader)?;
                // SAFETY: BlockQ4_1 is repr(C), 20 bytes of u16/u8 fields, no padding.
                Data::Q4_1(unsafe { read_pod(reader, n / QK) }?)
            }
            GgmlDType::Q8_0 => {
                seek(reader)?;
                // SAFETY: BlockQ8_0 is repr(C), 34 bytes of u16/i8 fields, no padding.
                Data::Q8_0(unsafe { read_pod(reader, n / QK) }?)
            }
            GgmlDType::F32 if dense_fallback => {
                seek(reader)?;
                // SAFETY: f32 accepts any bit pattern.
                let mut v: Vec<f32> = unsafe { read_pod(reader, n) }?;
                v.iter_mut()
                    .for_each(|x| *x = f32::from_bits(u32::from_le(x.to_bits())));
                Data::F32(v)
            }
            _ => {
                let q = content.tensor(reader, name, &Device::Cpu)?;
                if dense_fallback {
                    Data::F32(q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?)
                } else {
                    Data::Candle(QMatMul::from_qtensor(q)?)
                }
            }
        };
        Ok(Matrix { rows, cols, data })
    }

    /// Writes row `i` as f32 into `out` (`cols` long).
    pub fn row(&self, i: usize, out: &mut [f32]) -> Result<(), ModelError> {
        if i >= self.rows {
            return Err(ModelError::Invalid(format!(
                "token id {i} is outside the vocabulary ({})",
                self.rows
            )));
        }
        let kb = self.cols / QK;
        match &self.data {
            Data::Q4_1(b) => b[i * kb..(i + 1) * kb]
                .iter()
                .zip(out.chunks_exact_mut(QK))
                .for_each(|(b, o)| b.dequantize(o)),
            Data::Q8_0(b) => b[i * kb..(i + 1) * kb]
                .iter()
                .zip(out.chunks_exact_mut(QK))
                .for_each(|(b, o)| b.dequantize(o)),
            Data::F32(v) => out.copy_from_slice(&v[i * self.cols..(i + 1) * self.cols]),
            Data::Candle(_) => {
                return Err(ModelError::Invalid(
                    "no row lookup for this tensor type".into(),
                ))
            }
        }
        Ok(())
    }

    fn needs_q8(&self) -> bool {
        matches!(self.data, Data::Q4_1(_) | Data::Q8_0(_))
    }
}

/// One product of a batch: `out` (`m × w.rows`, row-major) = x · wᵀ.
pub struct Job<'a> {
    pub w: &'a Matrix,
    pub out: &'a mut [f32],
}

/// Rows `r0..r0 + rows` (at most [`CHUNK_ROWS`]) of `w` against every
/// activation row, into their columns of `out`.
fn rows_times_x(w: &Matrix, r0: usize, rows: usize, x: &[f32], q8: &[BlockQ8], m: usize, out: Out) {
    let k = w.cols;
    let kb = k / QK;
    let mut tile = [0f32; CHUNK_ROWS * TILE];
    for i0 in (0..m).step_by(TILE) {
        let r = TILE.min(m - i0);
        match &w.data {
            Data::Q4_1(b) => q4_1::gemm_tile(
                &b[r0 * kb..(r0 + rows) * kb],
                kb,
                &q8[i0 * kb..(i0 + r) * kb],
                r,
                &mut tile,
            ),
            Data::Q8_0(b) => q8_0::gemm_tile(
                &b[r0 * kb..(r0 + rows) * kb],
                kb,
                &q8[i0 * kb..(i0 + r) * kb],
                r,
                &mut tile,
            ),
            Data::F32(v) => {
                for j in 0..rows {
                    let wr = &v[(r0 + j) * k..(r0 + j + 1) * k];
                    for i in 0..r {
                        tile[j * r + i] = simd::dot(wr, &x[(i0 + i) * k..(i0 + i + 1) * k]);
                    }
                }
            }
            Data::Candle(_) => unreachable!("run by Candle, not here"),
        }
        for j in 0..rows {
            for i in 0..r {
                // SAFETY: (i0 + i, r0 + j) is inside the m × w.rows output,
                // and only the caller's item writes weight row r0 + j.
                unsafe { *out.ptr().add((i0 + i) * w.rows + r0 + j) = tile[j * r + i] };
            }
        }
    }
}

/// Computes every job's `out` = x · wᵀ for the `m` rows of `x`, in one
/// parallel pass: all the jobs share the input (Q, K and V; gate and up),
/// so it is quantized once and the threads meet once.
pub fn matmul(
    pool: &Pool,
    x: &[f32],
    m: usize,
    jobs: &mut [Job<'_>],
    q8: &mut Vec<BlockQ8>,
) -> Result<(), ModelError> {
    let k = x.len() / m.max(1);
    for job in jobs.iter() {
        if job.w.cols != k || job.out.len() != m * job.w.rows {
            return Err(ModelError::Invalid(format!(
                "matmul of {m}×{k} by {}×{} into {}",
                job.w.rows,
                job.w.cols,
                job.out.len()
            )));
        }
    }
    let kb = k / QK;
    if jobs.iter().any(|j| j.w.needs_q8()) {
        q8.clear();
        q8.resize(m * kb, BlockQ8::default());
        let dst = Out(q8.as_mut_ptr().cast());
        pool.run(m, &|i| {
            // SAFETY: item i writes only row i of q8, which holds m * kb
            // blocks and outlives the call.
            let row = unsafe {
                std::slice::from_raw_parts_mut(dst.ptr().cast::<BlockQ8>().add(i * kb), kb)
            };
            quantize_row(&x[i * k..(i + 1) * k], row);
        });
    }
    for job in jobs.iter_mut() {
        if let Data::Candle(qmm) = &job.w.data {
            let input = Tensor::from_slice(x, (m, k), &Device::Cpu)?;
            let y: Vec<f32> = qmm.forward(&input)?.flatten_all()?.to_vec1()?;
            job.out.copy_from_slice(&y);
        }
    }
    let q8: &[BlockQ8] = q8;
    let threads = pool.threads();
    // (matrix, output, rows per item, items)
    let native: Vec<(&Matrix, Out, usize, usize)> = jobs
        .iter_mut()
        .filter(|j| !matches!(j.w.data, Data::Candle(_)))
        .map(|j| {
            let per_item = (j.w.rows / (threads * ITEMS_PER_THREAD))
                .next_multiple_of(CHUNK_ROWS)
                .max(CHUNK_ROWS);
            (
                j.w,
                Out(j.out.as_mut_ptr()),
                per_item,
                j.w.rows.div_ceil(per_item),
            )
        })
        .collect();
    let total: usize = native.iter().map(|j| j.3).sum();
    pool.run(total, &|mut item| {
        let mut job = 0;
        while item >= native[job].3 {
            item -= native[job].3;
            job += 1;
        }
        let (w, out, per_item, _) = native[job];
        let end = ((item + 1) * per_item).min(w.rows);
        for r0 in (item * per_item..end).step_by(CHUNK_ROWS) {
            rows_times_x(w, r0, CHUNK_ROWS.min(end - r0), x, q8, m, out);
        }
    });
    Ok(())
}

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

    /// Random Q4_1 blocks with f16 scales of varied sizes.
    pub fn random_blocks_q4_1(n: usize, seed: u64) -> Vec<BlockQ4_1> {
        let bytes = random_row(n * 18, seed);
        (0..n)
            .map(|b| {
                let r = &bytes[b * 18..(b + 1) * 18];
                let mut qs = [0u8; QK / 2];
                for (q, v) in qs.iter_mut().zip(&r[2..]) {
                    *q = ((v + 1.0) * 127.9) as u8;
                }
                BlockQ4_1 {
                    d: f16::from_f32(r[0].abs() * 0.05 + 1e-4),
                    m: f16::from_f32(r[1] * 0.3),
                    qs,
                }
            })
            .collect()
    }

    #[test]
    fn quantized_rows_round_trip_within_half_a_step() {
        let x = random_row(96, 5);
        let mut q = vec![BlockQ8::default(); 3];
        quantize_row(&x, &mut q);
        for (b, x) in q.iter().zip(x.chunks_exact(QK)) {
            let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
            // s is d·Σq with the unrounded d, then rounded to f16.
            assert!(
                (b.s - b.d * sum as f32).abs() <= 2e-3 * b.s.abs() + 1e-6,
                "{} {}",
                b.s,
                b.d * sum as f32
            );
            for (&q, &v) in b.qs.iter().zip(x) {
                assert!(
                    (q as f32 * b.d - v).abs() <= b.d * 0.51 + 1e-3 * v.abs(),
                    "{q} {v}"
                );
            }
        }
    }
}
