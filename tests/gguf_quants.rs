//! The embedded engine on the GGUF types model hubs publish, in files
//! written by the `gguf` package (bench/make_gguf.py: random weights, the
//! default model's tokenizer) and quantized by llama.cpp's own quantizer:
//! the logits after a prompt must be llama.cpp's on the same file. A type
//! the engine does not run is refused with its name and the list it runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::default_model_dir;
use harness::llama_server::python;
use skillkernel_providers::candle::{GgufFile, LoadedModel};

/// The largest logit difference allowed, as a fraction of the largest
/// logit. Both engines quantize activations to int8 for the quantized
/// types, rounding slightly differently, and the random 4-layer network
/// amplifies that to about 2.5% (measured: 1.5–2.5%); with F16 weights,
/// where neither quantizes activations, they agree to 0.07%. A wrong bit
/// layout is off by the logits' whole size.
const TOLERANCE: f32 = 0.04;
const TOLERANCE_F16: f32 = 0.005;

const PROMPT: [u32; 12] = [1, 9690, 198, 504, 3458, 314, 260, 1345, 28, 2, 198, 17];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A random-weight model of `shape` quantized to `quant` by llama.cpp.
fn make(dir: &Path, shape: &str, quant: &str) -> PathBuf {
    let out = dir.join(format!("{shape}.{quant}.gguf"));
    let tokenizer = Path::new(&default_model_dir()).join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let output = Command::new(python())
        .arg(repo().join("bench/make_gguf.py"))
        .args([
            "--shape",
            shape,
            "--quant",
            quant,
            "--threads",
            "2",
            "--out",
        ])
        .arg(&out)
        .arg("--tokenizer-from")
        .arg(&tokenizer)
        .output()
        .expect("run bench/make_gguf.py");
    assert!(
        output.status.success(),
        "make_gguf {shape} {quant}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

fn llama_cpp_logits(model: &Path) -> Vec<f32> {
    let tokens: Vec<String> = PROMPT.iter().map(u32::to_string).collect();
    let output = Command::new(python())
        .arg(repo().join("tests/servers/llama_logits.py"))
        .arg(model)
        .arg(tokens.join(","))
        .output()
        .expect("run llama_logits.py");
    assert!(
        output.status.success(),
        "llama_logits: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("llama_logits prints a JSON array")
}

fn load(model: &Path) -> Result<LoadedModel, String> {
    GgufFile::open(model)
        .and_then(|g| LoadedModel::load_with_threads("parity", g, 2))
        .map_err(|e| e.to_string())
}

/// The types of the file's tensors, as llama.cpp's quantizer chose them.
fn tensor_types(model: &Path) -> String {
    let gguf = GgufFile::open(model).unwrap();
    let mut types: Vec<String> = gguf
        .content
        .tensor_infos
        .values()
        .map(|t| format!("{:?}", t.ggml_dtype))
        .collect();
    types.sort();
    types.dedup();
    types.join(" ")
}

#[test]
fn every_quantization_gives_llama_cpps_logits() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("tiny", "Q4_K_M"),
        ("tiny", "Q5_K_M"),
        ("tiny", "Q6_K"),
        ("tiny", "Q8_0"),
        ("tiny", "Q4_0"),
        ("tiny", "Q4_1"),
        ("tiny", "Q5_0"),
        ("tiny", "Q5_1"),
        ("tiny", "F16"),
        ("tiny-qwen2", "Q4_K_M"),
        ("tiny-qwen2", "Q5_K_M"),
    ];
    let mut report = Vec::new();
    let mut results = Vec::new();
    for (shape, quant) in cases {
        let model = make(dir.path(), shape, quant);
        let want = llama_cpp_logits(&model);
        let got = load(&model)
            .and_then(|mut m| m.logits_after(&PROMPT).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("{shape} {quant}: {e}"));
        assert_eq!(got.len(), want.len(), "{shape} {quant}: vocabulary");
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        let diff = got
            .iter()
            .zip(&want)
            .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
        let argmax = |v: &[f32]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
        };
        report.push(format!(
            "{shape} {quant} [{}]: max diff {:.4} of {scale:.3}, greedy {}",
            tensor_types(&model),
            diff / scale,
            if argmax(&got) == argmax(&want) {
                "same"
            } else {
                "DIFFERENT"
            }
        ));
        let tolerance = if quant == "F16" {
            TOLERANCE_F16
        } else {
            TOLERANCE
        };
        results.push((diff / scale <= tolerance, argmax(&got) == argmax(&want)));
        std::fs::remove_file(&model).unwrap();
    }
    let report = report.join("\n");
    eprintln!("{report}");
    for (close, same) in results {
        assert!(close && same, "logits differ from llama.cpp's:\n{report}");
    }
}

#[test]
fn an_unsupported_type_is_named_with_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let model = make(dir.path(), "tiny", "Q2_K");
    let error = load(&model).err().expect("a Q2_K model is refused");
    assert!(error.contains("Q2_K"), "{error}");
    assert!(error.contains("Q4_K, Q5_K, Q6_K"), "{error}");
    // The positive control: the same shape in a type the engine runs.
    let model = make(dir.path(), "tiny", "Q4_K_M");
    load(&model).expect("a Q4_K_M model loads");
}
