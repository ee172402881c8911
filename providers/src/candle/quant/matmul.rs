//! The matmul driver: quantizes the input rows once into the layouts the
//! weights need, then splits the weight rows of one or more matrices into
//! items for the inference threads.

use super::super::error::ModelError;
use super::super::pool::{Out, Pool};
use super::super::simd;
use super::matrix::{Data, Matrix, View};
use super::{gemm_tile, ActRow, Acts, Block, BlockQ8, BlockQ8K};

/// Weight rows per kernel call: small enough to stay in L1 while every
/// activation tile passes over them.
const CHUNK_ROWS: usize = 16;
/// Parallel items per thread and matrix: enough to balance the threads,
/// few enough that claiming them (an atomic each) stays cheap.
const ITEMS_PER_THREAD: usize = 8;
/// Activation rows sharing one pass over a weight row.
const TILE: usize = 4;

/// One product of a batch: `out` (`m × w.rows`, row-major) = x · wᵀ.
pub struct Job<'a> {
    pub w: &'a Matrix,
    pub out: &'a mut [f32],
}

/// Which quantized input a matrix's kernel reads.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    Q8,
    Q8K,
    F32,
}

fn input(data: &Data) -> Input {
    match data {
        Data::Q4_0(_) | Data::Q4_1(_) | Data::Q5_0(_) | Data::Q5_1(_) | Data::Q8_0(_) => Input::Q8,
        Data::Q4K(_) | Data::Q5K(_) | Data::Q6K(_) => Input::Q8K,
        Data::F16(_) | Data::F32(_) => Input::F32,
    }
}

/// Weight rows `r0..r0 + rows` against activation rows `i0..i0 + r` of
/// one quantized layout, into `tile`.
fn block_tile<B: Block>(
    w: &View<B>,
    k: usize,
    (r0, rows): (usize, usize),
    acts: &Acts,
    (i0, r): (usize, usize),
    tile: &mut [f32],
) {
    let kb = k / B::VALUES;
    let acts = B::Act::rows(acts);
    gemm_tile(
        &w.as_slice()[r0 * kb..(r0 + rows) * kb],
        kb,
        &acts[i0 * kb..(i0 + r) * kb],
        r,
        tile,
    );
}

/// Rows `r0..r0 + rows` (at most [`CHUNK_ROWS`]) of `w` against every
/// activation row, into their columns of `out`.
fn rows_times_x(w: &Matrix, r0: usize, rows: usize, x: &[f32], acts: &Acts, m: usize, out: Out) {
    let k = w.cols;
    let mut tile = [0f32; CHUNK_ROWS * TILE];
    for i0 in (0..m).step_by(TILE) {
        let r = TILE.min(m - i0);
        let (wr, xr, t) = ((r0, rows), (i0, r), &mut tile[..]);
        match &w.data {
            Data::Q4_0(v) => block_tile(v, k, wr, acts, xr, t),
            Data::Q4_1(v) => block_tile(v, k, wr, acts, xr, t),
            Data::Q5_0(v) => block_tile(v, k, wr, acts, xr, t),
            Data::Q5_1(v) => block_tile(v, k, wr, acts, xr, t),
            Data::Q8_0(v) => block_tile(v, k, wr, acts, xr, t),
            Data::Q4K(v) => block_tile(v, k, wr, acts, xr, t),
            Data::Q5K(v) => block_tile(v, k, wr, acts, xr, t),
            Data::Q6K(v) => block_tile(v, k, wr, acts, xr, t),
            Data::F16(v) => {
                let v = v.as_slice();
                for j in 0..rows {
                    let wr = &v[(r0 + j) * k..(r0 + j + 1) * k];
                    for i in 0..r {
                        t[j * r + i] = simd::dot_f16(&x[(i0 + i) * k..(i0 + i + 1) * k], wr);
                    }
                }
            }
            Data::F32(v) => {
                let v = v.as_slice();
                for j in 0..rows {
                    let wr = &v[(r0 + j) * k..(r0 + j + 1) * k];
                    for i in 0..r {
                        t[j * r + i] = simd::dot(wr, &x[(i0 + i) * k..(i0 + i + 1) * k]);
                    }
                }
            }
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

/// Quantizes the `m` rows of `x` into `buf` in parallel.
fn quantize_rows<A: ActRow>(pool: &Pool, x: &[f32], m: usize, buf: &mut Vec<A>) {
    let k = x.len() / m;
    let kb = k / A::VALUES;
    buf.clear();
    buf.resize(m * kb, A::default());
    let dst = Out(buf.as_mut_ptr().cast());
    pool.run(m, &|i| {
        // SAFETY: item i writes only row i of buf, which holds m * kb
        // blocks and outlives the call.
        let row = unsafe { std::slice::from_raw_parts_mut(dst.ptr().cast::<A>().add(i * kb), kb) };
        A::quantize(&x[i * k..(i + 1) * k], row);
    });
}

/// Computes every job's `out` = x · wᵀ for the `m` rows of `x`, in one
/// parallel pass: all the jobs share the input (Q, K and V; gate and up),
/// so it is quantized once per layout and the threads meet once.
pub fn matmul(
    pool: &Pool,
    x: &[f32],
    m: usize,
    jobs: &mut [Job<'_>],
    acts: &mut Acts,
) -> Result<(), ModelError> {
    let k = x.len() / m.max(1);
    for job in jobs.iter() {
        if m == 0 || job.w.cols != k || job.out.len() != m * job.w.rows {
            return Err(ModelError::Invalid(format!(
                "matmul of {m}×{k} by {}×{} into {}",
                job.w.rows,
                job.w.cols,
                job.out.len()
            )));
        }
    }
    if jobs.iter().any(|j| input(&j.w.data) == Input::Q8) {
        quantize_rows::<BlockQ8>(pool, x, m, &mut acts.q8);
    }
    if jobs.iter().any(|j| input(&j.w.data) == Input::Q8K) {
        quantize_rows::<BlockQ8K>(pool, x, m, &mut acts.q8k);
    }
    let acts: &Acts = acts;
    let threads = pool.threads();
    // (matrix, output, rows per item, items)
    let parts: Vec<(&Matrix, Out, usize, usize)> = jobs
        .iter_mut()
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
    let total: usize = parts.iter().map(|j| j.3).sum();
    pool.run(total, &|mut item| {
        let mut job = 0;
        while item >= parts[job].3 {
            item -= parts[job].3;
            job += 1;
        }
        let (w, out, per_item, _) = parts[job];
        let end = ((item + 1) * per_item).min(w.rows);
        for r0 in (item * per_item..end).step_by(CHUNK_ROWS) {
            rows_times_x(w, r0, CHUNK_ROWS.min(end - r0), x, acts, m, out);
        }
    });
    Ok(())
}
