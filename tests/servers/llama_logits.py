#!/usr/bin/env python3
"""Prints llama.cpp's logits after a token sequence, as JSON on stdout.

    llama_logits.py MODEL.gguf 5,17,3,42

The reference the embedded engine is checked against on the same file
(tests/gguf_quants.rs): llama-cpp-python's low-level eval, two threads,
the logits of the last token only.
"""

import json
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    model, tokens = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
    llm = Llama(model_path=model, n_ctx=256, n_batch=256, n_threads=2,
                n_threads_batch=2, verbose=False)
    llm.eval(tokens)
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))
    json.dump([float(v) for v in logits], sys.stdout)


if __name__ == "__main__":
    main()
