#!/usr/bin/env python3
"""Model benchmark: skillkernel's embedded Candle backend against llama.cpp
(through llama-cpp-python) on the same GGUF file, same threads, same run.

Each engine runs in its own child process, one after the other, for
--rounds rounds (Candle, llama.cpp, Candle, llama.cpp, ...):

* Candle: `target/release/examples/generate_bench` (providers/examples/
  generate_bench.rs), which prints JSON. Its threads are set with
  --threads (the backend's own inference threads; it also sets
  CANDLE_NUM_THREADS and RAYON_NUM_THREADS for Candle's pools, which only
  tensor types without a kernel of the backend use). Every timed run starts
  from an empty KV cache, like llama.cpp's reset.
* llama.cpp: this script again with --llama-worker, which loads
  `Llama(model, n_threads=T, n_threads_batch=T, n_ctx=2048)` and drives it
  with the low-level API (tokenize, eval, logits → argmax), so that:
  - the prompt is exactly the token ids Candle built (its chat template and
    tokenizer; they are turned back into text with llama.cpp's detokenizer
    and re-tokenized inside the timed region, and the ids are checked to be
    identical);
  - decoding is greedy with no repeat penalty, and EOS is ignored, so it
    always produces max_tokens tokens. (Candle's `generate` always stops at
    EOS; the decode prompt is chosen so that it runs to max_tokens too. The
    token counts both engines produced are reported.)

Figures, the same definitions for both engines:

* load      — Candle: GgufFile::open + LoadedModel::load_with_threads. llama.cpp: the
              Llama(...) constructor (model mmap + context + KV cache).
* ttft      — from the prompt (Candle: messages; llama.cpp: the rendered
              prompt text) to the first sampled token: template/tokenize,
              every prompt forward pass, the first argmax.
* prefill   — prompt tokens / time of the prompt forward passes only.
* decode    — forward passes after the first token / time from the first
              token to the end.
* RSS       — VmRSS of the engine's process after load and after all
              generation (both engines map the file, so its pages show up
              as RssFile once touched; llama.cpp also repacks some types
              into anonymous memory).

Before each engine run the script waits until the machine is idle (CPU busy
< --idle-busy over a short window), and after it checks how much CPU other
processes used meanwhile; a run disturbed by more than --max-foreign is
repeated (up to --retries times). Medians over every timed run are reported.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path.home() / ".cache/skillkernel/models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BIN = ROOT / "target/release/examples/generate_bench"
MIB = 1024 * 1024

TARGETS = {
    "decode_ratio": 1.0,
    "prefill_ratio": 0.8,
    "ttft_ms": 100.0,
    "load_ms": 500.0,
    "rss_extra_mib": 150.0,
}


def log(*a):
    print("==>", *a, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------
# Machine load
# --------------------------------------------------------------------------


def cpu_jiffies():
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(v) for v in parts[:8]]
    idle = vals[3] + vals[4]  # idle + iowait
    total = sum(vals)
    return total - idle, total


def busy_fraction(window=1.0):
    b0, t0 = cpu_jiffies()
    time.sleep(window)
    b1, t1 = cpu_jiffies()
    return (b1 - b0) / max(1, t1 - t0)


def wait_for_idle(max_busy, settle, timeout):
    """Wait until `settle` consecutive 1 s windows are below max_busy."""
    start = time.time()
    quiet = 0
    last = None
    while True:
        last = busy_fraction(1.0)
        quiet = quiet + 1 if last < max_busy else 0
        if quiet >= settle:
            return last
        if time.time() - start > timeout:
            log(f"machine still busy ({last:.0%}) after {timeout:.0f} s; measuring anyway")
            return last
        if quiet == 0 and int(time.time() - start) % 30 == 0:
            log(f"waiting for an idle machine (CPU busy {last:.0%}, load {os.getloadavg()[0]:.2f})")


def clk_tck():
    return os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# llama.cpp worker (child process)
# --------------------------------------------------------------------------


def read_status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0])
    return {
        "vm_rss_kib": out.get("VmRSS"),
        "rss_anon_kib": out.get("RssAnon"),
        "rss_file_kib": out.get("RssFile"),
        "vm_hwm_kib": out.get("VmHWM"),
    }


def llama_worker(args):
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama

    spec = json.load(open(args.worker_spec))
    scenarios = spec["scenarios"]
    rss_start = read_status()

    def load():
        t = time.perf_counter()
        llm = Llama(
            model_path=str(args.model),
            n_threads=args.threads,
            n_threads_batch=args.threads,
            n_ctx=args.n_ctx,
            n_batch=512,
            verbose=False,
        )
        return llm, (time.perf_counter() - t) * 1e3

    llm, first_load_ms = load()
    rss_after_load = read_status()
    n_vocab = llm.n_vocab()
    ctx = llm._ctx.ctx

    def argmax_last():
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

    def run(text_bytes, max_tokens):
        llama_cpp.llama_perf_context_reset(ctx)
        t0 = time.perf_counter()
        ids = llm.tokenize(text_bytes, add_bos=False, special=True)
        t_tok = time.perf_counter()
        llm.reset()
        llm.eval(ids)  # removes the whole KV cache first (n_tokens = 0)
        t_prompt = time.perf_counter()
        tok = argmax_last()
        t_first = time.perf_counter()
        out = [tok]
        forwards = 0
        while len(out) < max_tokens:  # EOS ignored on purpose
            llm.eval([tok])
            forwards += 1
            tok = argmax_last()
            out.append(tok)
        t_end = time.perf_counter()
        perf = llama_cpp.llama_perf_context(ctx)
        prefill_ms = (t_prompt - t_tok) * 1e3
        decode_ms = (t_end - t_first) * 1e3
        return ids, out, {
            "prompt_tokens": len(ids),
            "completion_tokens": len(out),
            "tokenize_ms": (t_tok - t0) * 1e3,
            "prompt_ms": (t_prompt - t0) * 1e3,
            "first_token_ms": (t_first - t0) * 1e3,
            "total_ms": (t_end - t0) * 1e3,
            "decode_forwards": forwards,
            "decode_ms": decode_ms,
            "decode_tps": forwards * 1e3 / decode_ms if forwards and decode_ms > 0 else 0.0,
            "prefill_tps": len(ids) * 1e3 / prefill_ms,
            # llama.cpp's own counters (C side only, no Python in between)
            "internal_p_eval_ms": perf.t_p_eval_ms,
            "internal_n_p_eval": perf.n_p_eval,
            "internal_eval_ms": perf.t_eval_ms,
            "internal_n_eval": perf.n_eval,
        }

    prepared = []
    for s in scenarios:
        ids = s["prompt_ids"]
        text = llm.detokenize(ids, special=True)
        same = llm.tokenize(text, add_bos=False, special=True) == ids
        max_tokens = s["max_tokens"]
        prepared.append((s, text, same, max_tokens))

    for _ in range(args.warmup):
        for s, text, _, max_tokens in prepared:
            run(text, max_tokens)

    results = []
    for s, text, same, max_tokens in prepared:
        runs = []
        out = []
        for _ in range(args.runs):
            ids, out, r = run(text, max_tokens)
            runs.append(r)
        results.append({
            "name": s["name"],
            "max_tokens": max_tokens,
            "prompt_tokens": len(s["prompt_ids"]),
            "same_prompt_ids": same,
            "text": llm.detokenize(out).decode("utf-8", "replace"),
            "generated_ids": out,
            "runs": runs,
            "median": {
                "ttft_ms": median([r["first_token_ms"] for r in runs]),
                "prompt_ms": median([r["prompt_ms"] for r in runs]),
                "prefill_tps": median([r["prefill_tps"] for r in runs]),
                "decode_tps": median([r["decode_tps"] for r in runs]),
                "total_ms": median([r["total_ms"] for r in runs]),
                "internal_prefill_tps": median([
                    r["internal_n_p_eval"] * 1e3 / r["internal_p_eval_ms"]
                    for r in runs if r["internal_p_eval_ms"] > 0]),
                "internal_decode_tps": median([
                    r["internal_n_eval"] * 1e3 / r["internal_eval_ms"]
                    for r in runs if r["internal_eval_ms"] > 0 and r["internal_n_eval"] > 0]),
            },
        })
    rss_after_generate = read_status()

    load_ms = [first_load_ms]
    del llm
    for _ in range(1, args.load_runs):
        m, ms = load()
        del m
        load_ms.append(ms)

    json.dump({
        "engine": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "threads": args.threads,
        "n_ctx": args.n_ctx,
        "load_ms": load_ms,
        "load_ms_median": median(load_ms),
        "memory": {"start": rss_start, "after_load": rss_after_load,
                   "after_generate": rss_after_generate},
        "scenarios": results,
    }, sys.stdout)


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def run_child(cmd, env, args, what):
    """Runs one engine process when the machine is idle; retries when other
    processes took more than --max-foreign of the CPU meanwhile."""
    for attempt in range(1, args.retries + 2):
        idle = wait_for_idle(args.idle_busy, args.idle_settle, args.idle_timeout)
        b0, t0 = cpu_jiffies()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.time()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.time() - w0
        b1, t1 = cpu_jiffies()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"{what} failed with exit code {proc.returncode}")
        child_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        total_cpu = (b1 - b0) / clk_tck()
        ncpu = os.cpu_count() or 1
        foreign = max(0.0, total_cpu - child_cpu) / (wall * ncpu)
        log(f"{what}: {wall:.1f} s wall, own CPU {child_cpu:.1f} s, "
            f"other processes {foreign:.0%} of the machine (idle check {idle:.0%} busy)")
        data = json.loads(proc.stdout)
        data["_run"] = {"wall_s": wall, "child_cpu_s": child_cpu,
                        "foreign_busy": foreign, "attempt": attempt}
        if foreign <= args.max_foreign:
            return data
        log(f"{what}: disturbed by other processes ({foreign:.0%} > {args.max_foreign:.0%}); retrying")
    log(f"{what}: still disturbed after {args.retries} retries; keeping the last run")
    return data


def scen(d, name):
    return next(s for s in d["scenarios"] if s["name"] == name)


def collect(rounds, name, key):
    """All per-run values of `key` in scenario `name` over every round."""
    out = []
    for d in rounds:
        out += [r[key] for r in scen(d, name)["runs"]]
    return out


def fmt(x, unit="", digits=1):
    if x is None or x != x:
        return "—"
    return f"{x:,.{digits}f}{unit}"


def summarize(cands, llamas, args, file_bytes):
    s = {}
    for eng, rounds in (("candle", cands), ("llama", llamas)):
        e = {}
        e["ttft_ms"] = median(collect(rounds, "short", "first_token_ms"))
        e["ttft_ms_all"] = collect(rounds, "short", "first_token_ms")
        e["prefill_tps"] = median(collect(rounds, "long", "prefill_tps"))
        e["prefill_tps_all"] = collect(rounds, "long", "prefill_tps")
        e["long_prompt_ms"] = median(collect(rounds, "long", "prompt_ms"))
        e["decode_tps"] = median(collect(rounds, "decode", "decode_tps"))
        e["decode_tps_all"] = collect(rounds, "decode", "decode_tps")
        e["decode_completion_tokens"] = sorted(set(collect(rounds, "decode", "completion_tokens")))
        e["load_ms"] = median([x for d in rounds for x in d["load_ms"]])
        e["load_ms_all"] = [x for d in rounds for x in d["load_ms"]]
        e["rss_after_load_mib"] = median([d["memory"]["after_load"]["vm_rss_kib"] / 1024 for d in rounds])
        e["rss_after_gen_mib"] = median([d["memory"]["after_generate"]["vm_rss_kib"] / 1024 for d in rounds])
        e["rss_start_mib"] = median([d["memory"]["start"]["vm_rss_kib"] / 1024 for d in rounds])
        e["rss_anon_after_gen_mib"] = median([d["memory"]["after_generate"]["rss_anon_kib"] / 1024 for d in rounds])
        e["rss_file_after_gen_mib"] = median([d["memory"]["after_generate"]["rss_file_kib"] / 1024 for d in rounds])
        e["prompt_tokens"] = {n: scen(rounds[0], n).get("prompt_tokens", len(scen(rounds[0], n).get("prompt_ids", [])))
                              for n in ("short", "long", "decode")}
        e["foreign_busy"] = [d["_run"]["foreign_busy"] for d in rounds]
        s[eng] = e
    for n in ("short", "long", "decode"):
        s["candle"]["prompt_tokens"][n] = len(scen(cands[0], n)["prompt_ids"])
    s["same_prompt_ids"] = all(sc["same_prompt_ids"] for d in llamas for sc in d["scenarios"])
    ct = scen(cands[0], "decode")["text"]
    lt = scen(llamas[0], "decode")["text"]
    common = 0
    for a, b in zip(ct, lt):
        if a != b:
            break
        common += 1
    s["decode_text_common_prefix_chars"] = common
    s["decode_text_lengths"] = (len(ct), len(lt))
    s["file_mib"] = file_bytes / MIB
    s["rss_limit_mib"] = file_bytes / MIB + TARGETS["rss_extra_mib"]
    return s


def status(ok):
    return "met" if ok else "**missed**"


def markdown(s, meta):
    c, l = s["candle"], s["llama"]
    dec_ratio = c["decode_tps"] / l["decode_tps"]
    pre_ratio = c["prefill_tps"] / l["prefill_tps"]
    pt = c["prompt_tokens"]
    lim = s["rss_limit_mib"]
    rows = [
        ("Decode, tokens/s (greedy, {} tokens after a {}-token prompt)".format(
            "/".join(map(str, c["decode_completion_tokens"])), pt["decode"]),
         fmt(c["decode_tps"]), fmt(l["decode_tps"]), f"{dec_ratio:.2f}×",
         "≥ 1.0× llama.cpp", status(dec_ratio >= TARGETS["decode_ratio"])),
        (f"Prompt processing, tokens/s ({pt['long']}-token prompt)",
         fmt(c["prefill_tps"]), fmt(l["prefill_tps"]), f"{pre_ratio:.2f}×",
         "≥ 0.8× llama.cpp", status(pre_ratio >= TARGETS["prefill_ratio"])),
        (f"Time to first token, {pt['short']}-token prompt",
         fmt(c["ttft_ms"], " ms"), fmt(l["ttft_ms"], " ms"), f"{c['ttft_ms'] / l['ttft_ms']:.2f}× the time",
         "≤ 100 ms", status(c["ttft_ms"] <= TARGETS["ttft_ms"])),
        ("Model load",
         fmt(c["load_ms"], " ms"), fmt(l["load_ms"], " ms"), f"{c['load_ms'] / l['load_ms']:.2f}× the time",
         "≤ 500 ms", status(c["load_ms"] <= TARGETS["load_ms"])),
        ("RSS after load (VmRSS)",
         fmt(c["rss_after_load_mib"], " MiB"), fmt(l["rss_after_load_mib"], " MiB"), "",
         f"≤ {lim:.1f} MiB (file {s['file_mib']:.1f} + 150)",
         status(c["rss_after_load_mib"] <= lim)),
        ("RSS after all generation (VmRSS)",
         fmt(c["rss_after_gen_mib"], " MiB"), fmt(l["rss_after_gen_mib"], " MiB"), "",
         f"≤ {lim:.1f} MiB", status(c["rss_after_gen_mib"] <= lim)),
        # Issue 18's targets for the files users download (any --model):
        # load and memory no worse than llama.cpp on the same file.
        ("Model load against llama.cpp",
         fmt(c["load_ms"], " ms"), fmt(l["load_ms"], " ms"), f"{c['load_ms'] / l['load_ms']:.2f}× the time",
         "≤ 1.0× llama.cpp's", status(c["load_ms"] <= l["load_ms"])),
        ("RSS after all generation against llama.cpp",
         fmt(c["rss_after_gen_mib"], " MiB"), fmt(l["rss_after_gen_mib"], " MiB"),
         f"{c['rss_after_gen_mib'] / l['rss_after_gen_mib']:.2f}×",
         "≤ llama.cpp's", status(c["rss_after_gen_mib"] <= l["rss_after_gen_mib"])),
    ]
    out = []
    out.append(f"Machine: {meta['machine']}; {meta['date']}")
    out.append("")
    out.append(f"Model: `{meta['model_name']}` ({s['file_mib']:.1f} MiB); threads {meta['threads']} for both; "
               f"{meta['rounds']} rounds × {meta['runs']} timed runs per scenario (medians), warm-up {meta['warmup']}; "
               f"llama.cpp via llama-cpp-python {meta['llama_version']}")
    out.append("")
    out.append("| Metric | skillkernel (Candle) | llama.cpp | Candle ÷ llama.cpp | Target | Status |")
    out.append("|---|---|---|---|---|---|")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    out.append("")

    def spread(xs, unit="", digits=1):
        return f"{fmt(min(xs), unit, digits)}–{fmt(max(xs), unit, digits)}"

    out.append(f"- Candle: decode {spread(c['decode_tps_all'])} tok/s, prefill {spread(c['prefill_tps_all'])} tok/s, "
               f"TTFT {spread(c['ttft_ms_all'], ' ms')}, load {spread(c['load_ms_all'], ' ms')}; "
               f"RSS at start {c['rss_start_mib']:.1f} MiB, after generation anon {c['rss_anon_after_gen_mib']:.1f} / "
               f"file {c['rss_file_after_gen_mib']:.1f} MiB; decode runs ended with {c['decode_completion_tokens']} tokens")
    out.append(f"- llama.cpp: decode {spread(l['decode_tps_all'])} tok/s, prefill {spread(l['prefill_tps_all'])} tok/s, "
               f"TTFT {spread(l['ttft_ms_all'], ' ms')}, load {spread(l['load_ms_all'], ' ms')}; "
               f"RSS at start (Python + llama_cpp imported) {l['rss_start_mib']:.1f} MiB, after generation anon "
               f"{l['rss_anon_after_gen_mib']:.1f} / file {l['rss_file_after_gen_mib']:.1f} MiB; "
               f"internal counters: prefill {fmt(meta['llama_internal_prefill'])} tok/s, decode {fmt(meta['llama_internal_decode'])} tok/s")
    out.append(f"- Same prompt token ids in both engines: {s['same_prompt_ids']}; "
               f"greedy decode texts agree for the first {s['decode_text_common_prefix_chars']} characters "
               f"(lengths {s['decode_text_lengths'][0]} / {s['decode_text_lengths'][1]})")
    out.append(f"- Other processes' share of the CPU during the runs: Candle "
               f"{', '.join(f'{x:.0%}' for x in c['foreign_busy'])}; llama.cpp {', '.join(f'{x:.0%}' for x in l['foreign_busy'])}")
    return "\n".join(out)


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--bin", type=Path, default=DEFAULT_BIN, help="the generate_bench example binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048, help="llama.cpp context size")
    ap.add_argument("--rounds", type=int, default=3, help="alternating Candle/llama.cpp process pairs")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per scenario per round")
    ap.add_argument("--warmup", type=int, default=1, help="untimed passes over all scenarios per process")
    ap.add_argument("--load-runs", type=int, default=3, help="model loads timed per process")
    ap.add_argument("--spec", type=Path, help="scenario JSON for generate_bench (default: its built-in prompts)")
    ap.add_argument("--idle-busy", type=float, default=0.15, help="CPU busy fraction counted as idle")
    ap.add_argument("--idle-settle", type=int, default=3, help="consecutive idle seconds before a run")
    ap.add_argument("--idle-timeout", type=float, default=900, help="longest wait for an idle machine, s")
    ap.add_argument("--max-foreign", type=float, default=0.10,
                    help="repeat a run if other processes used more than this share of the CPU")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--llama-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-spec", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.llama_worker:
        llama_worker(args)
        return
    if not args.model.is_file():
        raise SystemExit(f"model file not found: {args.model} (packaging/fetch-default-model installs it)")
    if not args.bin.is_file():
        raise SystemExit(f"missing {args.bin}; build it with "
                         "cargo build --release -p skillkernel-providers --example generate_bench")

    env = dict(os.environ)
    env["CANDLE_NUM_THREADS"] = str(args.threads)
    env["RAYON_NUM_THREADS"] = str(args.threads)
    env.setdefault("OMP_NUM_THREADS", str(args.threads))

    candle_cmd = [str(args.bin), "--model", str(args.model), "--threads", str(args.threads),
                  "--runs", str(args.runs), "--warmup", str(args.warmup), "--load-runs", str(args.load_runs)]
    if args.spec:
        candle_cmd += ["--spec", str(args.spec)]

    started = _dt.datetime.now(_dt.timezone.utc)
    cands, llamas = [], []
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "scenarios.json"
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}: Candle")
            c = run_child(candle_cmd, env, args, "Candle")
            cands.append(c)
            if r == 0:
                spec_path.write_text(json.dumps({"scenarios": [
                    {"name": s["name"], "prompt_ids": s["prompt_ids"], "max_tokens": s["max_tokens"]}
                    for s in c["scenarios"]]}))
            log(f"round {r + 1}/{args.rounds}: llama.cpp")
            llama_cmd = [sys.executable, __file__, "--llama-worker", "--worker-spec", str(spec_path),
                         "--model", str(args.model), "--threads", str(args.threads), "--n-ctx", str(args.n_ctx),
                         "--runs", str(args.runs), "--warmup", str(args.warmup), "--load-runs", str(args.load_runs)]
            llamas.append(run_child(llama_cmd, env, args, "llama.cpp"))

    file_bytes = args.model.stat().st_size
    s = summarize(cands, llamas, args, file_bytes)
    meta = {
        "machine": machine(),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "model_name": args.model.name,
        "threads": args.threads,
        "rounds": args.rounds,
        "runs": args.runs,
        "warmup": args.warmup,
        "llama_version": llamas[0]["llama_cpp_python"],
        "llama_system_info": llamas[0]["system_info"],
        "candle_threads": [d["candle_num_threads"] for d in cands],
        "llama_internal_prefill": median([scen(d, "long")["median"]["internal_prefill_tps"] for d in llamas]),
        "llama_internal_decode": median([scen(d, "decode")["median"]["internal_decode_tps"] for d in llamas]),
    }
    md = markdown(s, meta)
    print(md)
    if args.markdown:
        args.markdown.write_text(md + "\n")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "summary": s, "candle": cands, "llama": llamas}, indent=1))


if __name__ == "__main__":
    main()
