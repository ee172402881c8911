//! Our block layouts and kernels against Candle's independent port of
//! ggml: the same bytes, quantized by Candle, must dequantize to Candle's
//! values and multiply to Candle's `QMatMul` results. (The kernels' own
//! tests compare SIMD with scalar and scalar with dequantized arithmetic;
//! only an outside reference catches a layout both got wrong.)

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use super::q4_0::BlockQ4_0;
use super::q4_1::BlockQ4_1;
use super::q4_k::BlockQ4K;
use super::q5_0::BlockQ5_0;
use super::q5_1::BlockQ5_1;
use super::q5_k::BlockQ5K;
use super::q6_k::BlockQ6K;
use super::q8_0::BlockQ8_0;
use super::tests::random_row;
use super::{gemm_tile, ActRow, Block};

/// Candle's quantization of a random `n × k` matrix: our blocks read from
/// its bytes, its dequantized values, and its matmul with `x`.
fn through_candle<B: Block>(
    dtype: GgmlDType,
    n: usize,
    k: usize,
    x: &[f32],
) -> (Vec<B>, Vec<f32>, Vec<f32>) {
    let w: Vec<f32> = random_row(n * k, 3).iter().map(|v| v * 0.1).collect();
    let qt = QTensor::quantize(&Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap(), dtype).unwrap();
    let bytes = qt.data().unwrap();
    let size = std::mem::size_of::<B>();
    assert_eq!(
        bytes.len(),
        n * k / B::VALUES * size,
        "{dtype:?} block size"
    );
    let blocks: Vec<B> = bytes
        .chunks_exact(size)
        // SAFETY: each chunk is exactly one block's bytes and B is plain
        // old data valid for any bit pattern; read_unaligned needs no
        // alignment.
        .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<B>()) })
        .collect();
    let deq = qt
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let xt = Tensor::from_vec(x.to_vec(), (1, k), &Device::Cpu).unwrap();
    let mm = QMatMul::from_qtensor(qt)
        .unwrap()
        .forward(&xt)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    (blocks, deq, mm)
}

fn check<B: Block>(dtype: GgmlDType) {
    let (n, k) = (8usize, 512usize);
    let x = random_row(k, 7);
    let (blocks, deq, candle) = through_candle::<B>(dtype, n, k, &x);
    let mut ours = vec![0f32; n * k];
    for (b, out) in blocks.iter().zip(ours.chunks_exact_mut(B::VALUES)) {
        b.dequantize(out);
    }
    for (i, (a, b)) in ours.iter().zip(&deq).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
            "{dtype:?} value {i}: ours {a}, candle {b}"
        );
    }
    let kb = k / B::VALUES;
    let mut acts = vec![B::Act::default(); kb];
    B::Act::quantize(&x, &mut acts);
    let mut got = vec![0f32; n];
    gemm_tile(&blocks, kb, &acts, 1, &mut got);
    for j in 0..n {
        let abs: f32 = (0..k).map(|i| (deq[j * k + i] * x[i]).abs()).sum();
        assert!(
            (got[j] - candle[j]).abs() <= 3e-3 * abs,
            "{dtype:?} row {j}: ours {}, candle {}",
            got[j],
            candle[j]
        );
    }
}

#[test]
fn every_block_type_reads_candles_bytes_as_candle_does() {
    check::<BlockQ4_0>(GgmlDType::Q4_0);
    check::<BlockQ4_1>(GgmlDType::Q4_1);
    check::<BlockQ5_0>(GgmlDType::Q5_0);
    check::<BlockQ5_1>(GgmlDType::Q5_1);
    check::<BlockQ8_0>(GgmlDType::Q8_0);
    check::<BlockQ4K>(GgmlDType::Q4K);
    check::<BlockQ5K>(GgmlDType::Q5K);
    check::<BlockQ6K>(GgmlDType::Q6K);
}
