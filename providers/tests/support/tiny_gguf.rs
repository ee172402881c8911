//! Tiny GGUF models with random weights, written by the tests themselves:
//! the real loading, tokenizing, sampling and streaming paths, in
//! milliseconds, for the llama and qwen2 shapes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// Special tokens of the tiny vocabulary (ChatML).
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// GPT-2's byte → printable-character table.
fn bytes_to_unicode() -> Vec<char> {
    let mut table = vec!['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            let c = char::from_u32(256 + n).unwrap();
            n += 1;
            c
        };
    }
    table
}

/// The vocabulary: specials, the 256 byte tokens, and one merged token.
pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    v.extend(bytes_to_unicode().into_iter().map(String::from));
    v.push("Ġt".into());
    v
}

/// Shape of a tiny model.
#[derive(Clone, Copy)]
pub struct Shape {
    pub arch: &'static str,
    pub layers: usize,
    pub embedding: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ff: usize,
    pub context: u32,
}

impl Shape {
    pub fn llama() -> Self {
        Shape {
            arch: "llama",
            layers: 2,
            embedding: 64,
            heads: 4,
            kv_heads: 2,
            ff: 128,
            context: 512,
        }
    }
    pub fn qwen2() -> Self {
        Shape {
            arch: "qwen2",
            ..Self::llama()
        }
    }
}

fn random(dims: &[usize], seed: u64) -> QTensor {
    // Deterministic pseudo-random weights in [-0.5, 0.5).
    let n: usize = dims.iter().product();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let t = Tensor::from_vec(data, dims, &Device::Cpu).unwrap();
    QTensor::quantize(&t, GgmlDType::F32).unwrap()
}

fn ones(n: usize) -> QTensor {
    let t = Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    QTensor::quantize(&t, GgmlDType::F32).unwrap()
}

/// Writes a model of `shape` to `dir/name.gguf` and returns its path.
pub fn write(dir: &Path, name: &str, shape: Shape, chat_template: Option<&str>) -> PathBuf {
    let vocab = vocab();
    let n_vocab = vocab.len();
    let e = shape.embedding;
    let head_dim = e / shape.heads;
    let kv = head_dim * shape.kv_heads;
    let a = shape.arch;
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (format!("{a}.block_count"), Value::U32(shape.layers as u32)),
        (format!("{a}.context_length"), Value::U32(shape.context)),
        (format!("{a}.embedding_length"), Value::U32(e as u32)),
        (
            format!("{a}.feed_forward_length"),
            Value::U32(shape.ff as u32),
        ),
        (
            format!("{a}.attention.head_count"),
            Value::U32(shape.heads as u32),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            Value::U32(shape.kv_heads as u32),
        ),
        (
            format!("{a}.rope.dimension_count"),
            Value::U32(head_dim as u32),
        ),
        (format!("{a}.rope.freq_base"), Value::F32(10000.0)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(vocab.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..n_vocab)
                    .map(|i| Value::I32(if i < SPECIALS.len() { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(vec![Value::String("Ġ t".into())]),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ];
    if let Some(t) = chat_template {
        meta.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), random(&[n_vocab, e], 1)),
        ("output_norm.weight".into(), ones(e)),
        ("output.weight".into(), random(&[n_vocab, e], 2)),
    ];
    for l in 0..shape.layers {
        let p = format!("blk.{l}");
        let s = 100 + l as u64 * 10;
        tensors.push((format!("{p}.attn_norm.weight"), ones(e)));
        tensors.push((format!("{p}.attn_q.weight"), random(&[e, e], s)));
        tensors.push((format!("{p}.attn_k.weight"), random(&[kv, e], s + 1)));
        tensors.push((format!("{p}.attn_v.weight"), random(&[kv, e], s + 2)));
        tensors.push((format!("{p}.attn_output.weight"), random(&[e, e], s + 3)));
        tensors.push((format!("{p}.ffn_norm.weight"), ones(e)));
        tensors.push((
            format!("{p}.ffn_gate.weight"),
            random(&[shape.ff, e], s + 4),
        ));
        tensors.push((
            format!("{p}.ffn_down.weight"),
            random(&[e, shape.ff], s + 5),
        ));
        tensors.push((format!("{p}.ffn_up.weight"), random(&[shape.ff, e], s + 6)));
        if a == "qwen2" {
            tensors.push((format!("{p}.attn_q.bias"), random(&[e], s + 7)));
            tensors.push((format!("{p}.attn_k.bias"), random(&[kv], s + 8)));
            tensors.push((format!("{p}.attn_v.bias"), random(&[kv], s + 9)));
        }
    }
    let path = dir.join(format!("{name}.gguf"));
    let mut file = std::fs::File::create(&path).unwrap();
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).unwrap();
    path
}
