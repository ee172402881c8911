//! The forward pass against candle-transformers' models on tiny random
//! GGUF files with the default model's tensor types (Q4_1 layers, Q8_0
//! embedding), for each architecture.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};

use super::{KvType, Model, Sequence, Step};
use crate::candle::gguf::Architecture;

const VOCAB: usize = 96;
const EMBD: usize = 64;
const FF: usize = 128;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const LAYERS: usize = 2;
const PROMPT: [u32; 7] = [5, 17, 3, 42, 8, 60, 1];
const DECODE: [u32; 3] = [77, 2, 30];

fn random(dims: &[usize], seed: u64, scale: f32, offset: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale + offset
        })
        .collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

fn q(t: Tensor, dtype: GgmlDType) -> QTensor {
    QTensor::quantize(&t, dtype).unwrap()
}

/// Writes a tiny model of `arch` with `wtype` layer weights and a Q8_0
/// embedding (tied to the output for llama, as in SmolLM2).
fn write(dir: &Path, arch: &str, wtype: GgmlDType) -> PathBuf {
    let head_dim = EMBD / HEADS;
    let kv = head_dim * KV_HEADS;
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        // candle's qwen3 keeps its RoPE tables in f32 only when told so.
        ("general.dtype".into(), Value::U32(0)),
        (format!("{arch}.block_count"), Value::U32(LAYERS as u32)),
        (format!("{arch}.context_length"), Value::U32(256)),
        (format!("{arch}.embedding_length"), Value::U32(EMBD as u32)),
        (format!("{arch}.feed_forward_length"), Value::U32(FF as u32)),
        (
            format!("{arch}.attention.head_count"),
            Value::U32(HEADS as u32),
        ),
        (
            format!("{arch}.attention.head_count_kv"),
            Value::U32(KV_HEADS as u32),
        ),
        (
            format!("{arch}.attention.key_length"),
            Value::U32(head_dim as u32),
        ),
        (
            format!("{arch}.rope.dimension_count"),
            Value::U32(head_dim as u32),
        ),
        (format!("{arch}.rope.freq_base"), Value::F32(10000.0)),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
    ];
    meta.push(("general.name".into(), Value::String("tiny".into())));
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            q(random(&[VOCAB, EMBD], 1, 2.0, 0.0), GgmlDType::Q8_0),
        ),
        (
            "output_norm.weight".into(),
            q(random(&[EMBD], 2, 0.4, 1.0), GgmlDType::F32),
        ),
    ];
    if arch != "llama" {
        tensors.push((
            "output.weight".into(),
            q(random(&[VOCAB, EMBD], 3, 1.0, 0.0), GgmlDType::Q8_0),
        ));
    }
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        let s = 100 + 20 * l as u64;
        let w = |rows, cols, seed| q(random(&[rows, cols], seed, 0.6, 0.02), wtype);
        let f = |n, seed, scale, offset| q(random(&[n], seed, scale, offset), GgmlDType::F32);
        tensors.push((format!("{p}.attn_norm.weight"), f(EMBD, s, 0.4, 1.0)));
        tensors.push((format!("{p}.attn_q.weight"), w(EMBD, EMBD, s + 1)));
        tensors.push((format!("{p}.attn_k.weight"), w(kv, EMBD, s + 2)));
        tensors.push((format!("{p}.attn_v.weight"), w(kv, EMBD, s + 3)));
        tensors.push((format!("{p}.attn_output.weight"), w(EMBD, EMBD, s + 4)));
        tensors.push((format!("{p}.ffn_norm.weight"), f(EMBD, s + 5, 0.4, 1.0)));
        tensors.push((format!("{p}.ffn_gate.weight"), w(FF, EMBD, s + 6)));
        tensors.push((format!("{p}.ffn_up.weight"), w(FF, EMBD, s + 7)));
        tensors.push((format!("{p}.ffn_down.weight"), w(EMBD, FF, s + 8)));
        if arch == "qwen2" {
            tensors.push((format!("{p}.attn_q.bias"), f(EMBD, s + 9, 0.5, 0.0)));
            tensors.push((format!("{p}.attn_k.bias"), f(kv, s + 10, 0.5, 0.0)));
            tensors.push((format!("{p}.attn_v.bias"), f(kv, s + 11, 0.5, 0.0)));
        }
        if arch == "qwen3" {
            tensors.push((
                format!("{p}.attn_q_norm.weight"),
                f(head_dim, s + 12, 0.4, 1.0),
            ));
            tensors.push((
                format!("{p}.attn_k_norm.weight"),
                f(head_dim, s + 13, 0.4, 1.0),
            ));
        }
    }
    let path = dir.join(format!("{arch}-{wtype:?}.gguf"));
    let mut file = File::create(&path).unwrap();
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &meta, &tensors).unwrap();
    path
}

fn open(path: &Path) -> (Content, BufReader<File>) {
    let mut reader = BufReader::new(File::open(path).unwrap());
    (Content::read(&mut reader).unwrap(), reader)
}

/// Our model, with an f32 KV cache like candle-transformers'.
fn ours(path: &Path, arch: Architecture, threads: usize) -> Model {
    let (content, _) = open(path);
    let file = File::open(path).unwrap();
    let map = std::sync::Arc::new(unsafe { memmap2::Mmap::map(&file) }.unwrap());
    let mut model = Model::load(arch, &content, &map, threads).unwrap();
    model.set_kv_type(KvType::F32);
    model
}

/// One of candle-transformers' `forward`s: tokens and position → logits.
type Forward = Box<dyn FnMut(&[u32], usize) -> Tensor>;

/// candle-transformers' logits for the prompt, then for each decode token.
fn candle_logits(path: &Path, arch: Architecture) -> Vec<Vec<f32>> {
    let (content, mut reader) = open(path);
    let dev = Device::Cpu;
    let mut forward: Forward = match arch {
        Architecture::Llama => {
            let mut m =
                quantized_llama::ModelWeights::from_gguf(content, &mut reader, &dev).unwrap();
            Box::new(move |t, pos| {
                m.forward(&Tensor::new(t, &dev).unwrap().unsqueeze(0).unwrap(), pos)
                    .unwrap()
            })
        }
        Architecture::Qwen2 => {
            let mut m =
                quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, &dev).unwrap();
            Box::new(move |t, pos| {
                m.forward(&Tensor::new(t, &dev).unwrap().unsqueeze(0).unwrap(), pos)
                    .unwrap()
            })
        }
        Architecture::Qwen3 => {
            let mut m =
                quantized_qwen3::ModelWeights::from_gguf(content, &mut reader, &dev).unwrap();
            Box::new(move |t, pos| {
                m.forward(&Tensor::new(t, &dev).unwrap().unsqueeze(0).unwrap(), pos)
                    .unwrap()
            })
        }
    };
    let mut out = vec![forward(&PROMPT, 0)];
    for (i, &t) in DECODE.iter().enumerate() {
        out.push(forward(&[t], PROMPT.len() + i));
    }
    out.into_iter()
        .map(|l| l.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

fn our_logits(model: &mut Model) -> Vec<Vec<f32>> {
    let mut seq = model.new_sequence();
    let mut out = vec![model.forward(&mut seq, &PROMPT).unwrap()];
    for &t in &DECODE {
        out.push(model.forward(&mut seq, &[t]).unwrap());
    }
    out
}

/// The largest logit difference over all steps, relative to the largest
/// logit, and whether every step's greedy choice agrees.
fn compare(want: &[Vec<f32>], got: &[Vec<f32>]) -> (f32, bool) {
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|p| p.0)
    };
    let mut worst = 0f32;
    let mut same_choice = want.len() == got.len();
    for (w, g) in want.iter().zip(got) {
        assert_eq!(w.len(), g.len());
        let scale = w.iter().fold(0f32, |a, v| a.max(v.abs()));
        let diff = w.iter().zip(g).fold(0f32, |a, (w, g)| a.max((w - g).abs()));
        worst = worst.max(diff / scale);
        same_choice &= argmax(w) == argmax(g);
    }
    (worst, same_choice)
}

/// With Q8_0 weights both sides run the same integer kernel, so this pins
/// down everything else (RoPE style, biases, QK-norm, GQA, tied output,
/// the KV cache) tightly.
#[test]
fn logits_match_candle_transformers_for_every_architecture() {
    let dir = tempfile::tempdir().unwrap();
    for (name, arch) in [
        ("llama", Architecture::Llama),
        ("qwen2", Architecture::Qwen2),
        ("qwen3", Architecture::Qwen3),
    ] {
        let path = write(dir.path(), name, GgmlDType::Q8_0);
        let want = candle_logits(&path, arch);
        let got = our_logits(&mut ours(&path, arch, 2));
        let (diff, same_choice) = compare(&want, &got);
        assert!(
            diff <= 1e-4,
            "{name}: logits differ by {diff} of the largest"
        );
        assert!(same_choice, "{name}: greedy choices differ");
    }
}

/// With Q4_1 weights the activation sums are rounded slightly differently
/// (see `quant::q4_1`), and a random two-layer network amplifies that, so
/// the bound is looser; a wrong nibble order or a dropped minimum would be
/// off by the logits' whole scale.
#[test]
fn q4_1_logits_stay_close_to_candle_transformers() {
    let dir = tempfile::tempdir().unwrap();
    for (name, arch) in [
        ("llama", Architecture::Llama),
        ("qwen2", Architecture::Qwen2),
    ] {
        let path = write(dir.path(), name, GgmlDType::Q4_1);
        let want = candle_logits(&path, arch);
        let got = our_logits(&mut ours(&path, arch, 2));
        let (diff, _) = compare(&want, &got);
        eprintln!("{name}: {diff}");
        assert!(
            diff <= 0.08,
            "{name}: logits differ by {diff} of the largest"
        );
    }
}

/// An f16 cache (the tiny model's heads are too narrow for Q8_0 blocks,
/// which `kv` tests) moves the logits a little and no greedy choice. (The
/// random network amplifies rounding, as in the Q4_1 test; the default
/// model's answers are checked to be unchanged in `tests/smollm2.rs`.)
#[test]
fn an_f16_kv_cache_stays_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "llama", GgmlDType::Q8_0);
    let exact = our_logits(&mut ours(&path, Architecture::Llama, 2));
    let mut half = ours(&path, Architecture::Llama, 2);
    half.set_kv_type(KvType::F16);
    assert_eq!(half.kv_type(), KvType::F16);
    let (diff, same_choice) = compare(&exact, &our_logits(&mut half));
    assert!(diff > 0.0 && diff <= 0.05, "logits differ by {diff}");
    assert!(same_choice);
}

#[test]
fn batching_threads_and_cache_reuse_give_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "qwen2", GgmlDType::Q4_1);
    // The whole sequence at once, on one thread.
    let mut one = ours(&path, Architecture::Qwen2, 1);
    let all: Vec<u32> = PROMPT.iter().chain(&DECODE).copied().collect();
    let batched = one.forward(&mut one.new_sequence(), &all).unwrap();
    // Token by token, on three threads.
    let mut three = ours(&path, Architecture::Qwen2, 3);
    let mut seq = three.new_sequence();
    let mut last = Vec::new();
    for &t in &all {
        last = three.forward(&mut seq, &[t]).unwrap();
    }
    assert_eq!(batched, last);
    // Drop the last four positions and run them again.
    seq.truncate(all.len() - 4);
    assert_eq!(seq.len(), all.len() - 4);
    assert_eq!(
        three.forward(&mut seq, &all[all.len() - 4..]).unwrap(),
        batched
    );
    // A copy of the prefix continues as the original does.
    let mut copy = seq.copy_prefix(all.len() - 6).unwrap();
    assert_eq!(copy.len(), all.len() - 6);
    assert_eq!(
        three.forward(&mut copy, &all[all.len() - 6..]).unwrap(),
        batched
    );
}

/// Sequences at different positions, some in their prompt and some
/// decoding, share passes; each gets exactly the logits it gets alone.
#[test]
fn sequences_batched_together_get_the_logits_they_get_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "llama", GgmlDType::Q4_1);
    let mut model = ours(&path, Architecture::Llama, 2);
    model.set_kv_type(KvType::F16);
    let prompts: [&[u32]; 3] = [&PROMPT, &[7, 3, 9], &DECODE];
    let follow: [u32; 3] = [5, 1, 8];
    // Alone: each prompt, then two single tokens.
    let alone: Vec<Vec<Vec<f32>>> = prompts
        .iter()
        .map(|p| {
            let mut seq = model.new_sequence();
            let mut out = vec![model.forward(&mut seq, p).unwrap()];
            for &t in &follow[..2] {
                out.push(model.forward(&mut seq, &[t]).unwrap());
            }
            out
        })
        .collect();
    // Together: the first pass runs all three prompts, the next two one
    // token each; the third sequence joins a pass late, by itself first.
    let mut seqs: Vec<Sequence> = (0..3).map(|_| model.new_sequence()).collect();
    let mut got: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 3];
    let [a, b, c] = &mut seqs[..] else {
        unreachable!()
    };
    let first = model
        .forward_batch(&mut [
            Step {
                seq: a,
                tokens: prompts[0],
                logits: true,
            },
            Step {
                seq: b,
                tokens: prompts[1],
                logits: true,
            },
        ])
        .unwrap();
    for (i, r) in first.into_iter().enumerate() {
        got[i].push(r.unwrap().unwrap());
    }
    let second = model
        .forward_batch(&mut [
            Step {
                seq: a,
                tokens: &follow[..1],
                logits: true,
            },
            Step {
                seq: c,
                tokens: prompts[2],
                logits: true,
            },
            Step {
                seq: b,
                tokens: &follow[..1],
                logits: true,
            },
        ])
        .unwrap();
    let order = [0, 2, 1];
    for (i, r) in order.into_iter().zip(second) {
        got[i].push(r.unwrap().unwrap());
    }
    let third = model
        .forward_batch(&mut [
            Step {
                seq: b,
                tokens: &follow[1..2],
                logits: true,
            },
            Step {
                seq: c,
                tokens: &follow[..1],
                logits: true,
            },
            Step {
                seq: a,
                tokens: &follow[1..2],
                logits: true,
            },
        ])
        .unwrap();
    for (i, r) in [1, 2, 0].into_iter().zip(third) {
        got[i].push(r.unwrap().unwrap());
    }
    let [_, _, c] = &mut seqs[..] else {
        unreachable!()
    };
    got[2].push(model.forward(c, &follow[1..2]).unwrap());
    assert_eq!(got, alone);
}

/// A step that cannot run (a token outside the vocabulary, a full
/// window) is answered with its error; the others run as if alone.
#[test]
fn one_sequences_bad_step_leaves_the_others_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "llama", GgmlDType::Q8_0);
    let mut model = ours(&path, Architecture::Llama, 2);
    let want = model.forward(&mut model.new_sequence(), &PROMPT).unwrap();
    let (mut good, mut bad, mut full) = (
        model.new_sequence(),
        model.new_sequence(),
        model.new_sequence(),
    );
    let window: Vec<u32> = (0..model.context_length() as u32 + 1)
        .map(|i| i % 10)
        .collect();
    let results = model
        .forward_batch(&mut [
            Step {
                seq: &mut bad,
                tokens: &[1, 1_000_000],
                logits: true,
            },
            Step {
                seq: &mut good,
                tokens: &PROMPT,
                logits: true,
            },
            Step {
                seq: &mut full,
                tokens: &window,
                logits: false,
            },
        ])
        .unwrap();
    let [bad_result, good_result, full_result] = <[_; 3]>::try_from(results).unwrap();
    let e = bad_result.unwrap_err().to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
    let e = full_result.unwrap_err().to_string();
    assert!(e.contains("context window"), "{e}");
    assert_eq!(good_result.unwrap().unwrap(), want);
    assert_eq!((good.len(), bad.len(), full.len()), (PROMPT.len(), 0, 0));
}
