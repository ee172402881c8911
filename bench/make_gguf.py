#!/usr/bin/env python3
"""Writes a random-weight GGUF of a realistic model shape, quantized by
llama.cpp itself, so the embedded engine and llama.cpp can be compared on
the files users download without downloading one.

    make_gguf.py --shape llama-1b --quant Q4_K_M --out llama-1b.Q4_K_M.gguf

Shapes (the tensor layout of the real models; the weights are random):

* llama-1b      Llama 3.2 1B: hidden 2048, 16 layers, FFN 8192, 32 query
                and 8 KV heads, vocabulary 128256, embedding tied to the
                output as in the real model.
* qwen2.5-0.5b  Qwen2.5 0.5B: hidden 896, 24 layers, FFN 4864, 14/2 heads,
                Q/K/V biases, vocabulary 151936, tied embedding.
* tiny          a 4-layer llama (hidden 256) for tests: seconds to make.
* tiny-qwen2    a 3-layer qwen2 of width 320, for the K-quants' fallbacks.

The tokenizer, its merges and the chat template are copied from the
default model (SmolLM2's byte-level BPE, --tokenizer-from), and the
vocabulary is padded with control tokens up to the shape's size, so the
embedding and output matrices have their real sizes and both engines
tokenize prompts the same way.

The weights are written as F16 (norms F32) with the `gguf` package, then
`llama_model_quantize` from llama-cpp-python turns the file into the
requested type with llama.cpp's own rules (Q4_K_M mixes Q4_K with Q6_K,
widths that are not a multiple of 256 fall back to Q5_0/Q8_0, …).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

SHAPES = {
    "llama-1b": dict(arch="llama", hidden=2048, layers=16, ffn=8192, heads=32, kv_heads=8,
                     vocab=128256, bias=False, rope_base=500000.0, eps=1e-5, tied=True),
    "qwen2.5-0.5b": dict(arch="qwen2", hidden=896, layers=24, ffn=4864, heads=14, kv_heads=2,
                         vocab=151936, bias=True, rope_base=1000000.0, eps=1e-6, tied=True),
    "tiny": dict(arch="llama", hidden=256, layers=4, ffn=768, heads=8, kv_heads=4,
                 vocab=49152, bias=False, rope_base=10000.0, eps=1e-5, tied=False),
    # Widths that are not multiples of 256, as Qwen2.5-0.5B's: llama.cpp
    # falls back from the K-quants to Q5_0/Q5_1/Q8_0 for them.
    "tiny-qwen2": dict(arch="qwen2", hidden=320, layers=3, ffn=896, heads=5, kv_heads=1,
                       vocab=49152, bias=True, rope_base=1000000.0, eps=1e-6, tied=True),
}

QUANTS = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q5_0", "Q5_1",
          "Q4_0", "Q4_1",
          # Types the engine does not run, for the test of its refusal.
          "Q2_K", "Q3_K_M"]

DEFAULT_TOKENIZER = Path.home() / ".cache/skillkernel/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def log(*a):
    print("==>", *a, file=sys.stderr, flush=True)


def tokenizer_fields(path: Path):
    """The default model's tokenizer: tokens, types, merges, ids, template."""
    import gguf

    r = gguf.GGUFReader(str(path))

    def text(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def number(key):
        f = r.fields[key]
        return int(f.parts[f.data[0]][0])

    types = r.fields["tokenizer.ggml.token_type"]
    return dict(
        tokens=strings("tokenizer.ggml.tokens"),
        types=[int(types.parts[i][0]) for i in types.data],
        merges=strings("tokenizer.ggml.merges"),
        pre=text("tokenizer.ggml.pre"),
        bos=number("tokenizer.ggml.bos_token_id"),
        eos=number("tokenizer.ggml.eos_token_id"),
        template=text("tokenizer.chat_template"),
    )


def write_f16(shape: dict, tok: dict, out: Path, seed: int):
    import gguf

    rng = np.random.default_rng(seed)
    h, ff, L = shape["hidden"], shape["ffn"], shape["layers"]
    head_dim = h // shape["heads"]
    kvw = shape["kv_heads"] * head_dim
    vocab = shape["vocab"]
    w = gguf.GGUFWriter(str(out), shape["arch"])
    w.add_name(f"random {shape['arch']} {h}x{L}")
    w.add_context_length(4096)
    w.add_embedding_length(h)
    w.add_block_count(L)
    w.add_feed_forward_length(ff)
    w.add_head_count(shape["heads"])
    w.add_head_count_kv(shape["kv_heads"])
    w.add_rope_freq_base(shape["rope_base"])
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(shape["eps"])
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens = list(tok["tokens"])
    types = list(tok["types"])
    if len(tokens) > vocab:
        raise SystemExit(f"the tokenizer has {len(tokens)} tokens, more than {vocab}")
    # Padding: control tokens, like Llama 3's reserved special tokens.
    tokens += [f"<|reserved_{i}|>" for i in range(vocab - len(tokens))]
    types += [3] * (vocab - len(types))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(tok["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(tok["merges"])
    w.add_bos_token_id(tok["bos"])
    w.add_eos_token_id(tok["eos"])
    w.add_add_bos_token(False)
    w.add_chat_template(tok["template"])

    def mat(rows, cols, scale=None):
        # Scaled so activations keep their size through the layers.
        s = scale if scale is not None else 1.0 / np.sqrt(cols)
        return (rng.standard_normal((rows, cols), dtype=np.float32) * s).astype(np.float16)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    log(f"writing {out.name}: {shape['arch']} hidden {h}, {L} layers, vocab {vocab}")
    w.add_tensor("token_embd.weight", mat(vocab, h, 1.0))
    for l in range(L):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", norm(h))
        w.add_tensor(p + "attn_q.weight", mat(h, h))
        w.add_tensor(p + "attn_k.weight", mat(kvw, h))
        w.add_tensor(p + "attn_v.weight", mat(kvw, h))
        if shape["bias"]:
            w.add_tensor(p + "attn_q.bias", 0.1 * rng.standard_normal(h, dtype=np.float32))
            w.add_tensor(p + "attn_k.bias", 0.1 * rng.standard_normal(kvw, dtype=np.float32))
            w.add_tensor(p + "attn_v.bias", 0.1 * rng.standard_normal(kvw, dtype=np.float32))
        w.add_tensor(p + "attn_output.weight", mat(h, h))
        w.add_tensor(p + "ffn_norm.weight", norm(h))
        w.add_tensor(p + "ffn_gate.weight", mat(ff, h))
        w.add_tensor(p + "ffn_up.weight", mat(ff, h))
        w.add_tensor(p + "ffn_down.weight", mat(h, ff))
    w.add_tensor("output_norm.weight", norm(h))
    if not shape["tied"]:
        w.add_tensor("output.weight", mat(vocab, h))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


def quantize(src: Path, dst: Path, quant: str, threads: int):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = threads
    log(f"quantizing to {quant} with llama.cpp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed ({rc})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--quant", choices=QUANTS, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tokenizer-from", type=Path, default=DEFAULT_TOKENIZER)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if not args.tokenizer_from.is_file():
        raise SystemExit(f"no tokenizer source {args.tokenizer_from}: run packaging/fetch-default-model")
    tok = tokenizer_fields(args.tokenizer_from)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name("." + args.out.name + ".partial")
    if args.quant == "F16":
        write_f16(SHAPES[args.shape], tok, partial, args.seed)
    else:
        with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
            f16 = Path(tmp) / "f16.gguf"
            write_f16(SHAPES[args.shape], tok, f16, args.seed)
            quantize(f16, partial, args.quant, args.threads)
    partial.rename(args.out)
    log(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
