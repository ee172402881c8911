#!/usr/bin/env python3
"""Concurrency benchmark of the embedded engine (issue 18): continuous
batching against one stream and against llama.cpp's own batch, a parallel
workflow through the daemon, and the prefix cache's time to first token.

Part `streams` (same model file, same threads, alternating processes):

* skillkernel: `target/release/examples/batch_bench` (providers/examples/
  batch_bench.rs) sends 1, then 4 requests at once through the backend's
  streams and reports the aggregate decode rate (tokens after each
  stream's first, over the span from the last first token to the end).
* llama.cpp: this script with --llama-worker drives llama-cpp-python's
  low-level batch API: the same prompt token ids (from batch_bench) as
  sequences 0..N-1 of one `llama_batch`, all prompts in one decode, then
  one decode per step with one token of every sequence, greedy, EOS
  ignored, for --max-tokens tokens. Its decode rate is N·(max_tokens−1)
  over the same span.

Part `daemon` (the release daemon, real kernel clients):

* `pros-cons` — the example workflow (two parallel phases, then one) run
  with a different decision each time, wall time from execute_request to
  execute_reply, with `[models.candle] max_sequences = 4` (batching) and
  `= 1` (one generation at a time, as the engine ran before batching), and
  with --baseline-binary (an older build) when given;
* `prefix` — a prompt skill whose template starts with ~500 fixed tokens,
  run twice with different inputs after `%clear --conversation`: time from
  execute_request to the first display of its answer on iopub, the second
  run against the first.

The response cache is off (`[models.cache] enabled = false`) so every run
reaches the model. Prints a markdown summary; --json writes everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path.home() / ".cache/skillkernel/models/SmolLM2-135M-Instruct.Q4_1.gguf"

TARGETS = {"batch_vs_one": 2.5, "batch_vs_llama": 1.0, "workflow_vs_serial": 0.7, "prefix_ttft": 0.3}

DECISIONS = [
    "Move the team to a four-day week.",
    "Rewrite the billing service in Rust.",
    "Open a second office in Lisbon.",
    "Drop support for the old mobile app.",
    "Hire a dedicated technical writer.",
    "Switch the company laptops to Linux.",
    "Adopt trunk-based development.",
]

QUESTIONS = [
    ("Which step comes first?", "What should be checked last?"),
    ("Who signs the form?", "How long does the review take?"),
    ("What is the main risk?", "Which tool is used?"),
    ("Where is the log kept?", "When is the deadline?"),
]

# About 500 tokens of fixed instructions: the head a skill repeats on
# every run.
HEAD = (
    "You are the assistant of a small operations team. Every answer you give "
    "follows the team's handbook, summarised here. Releases happen on Tuesdays "
    "and Thursdays; a release needs a green build, a changelog entry and a "
    "second reviewer. Incidents are declared in the incident channel, and the "
    "person who declares one is its coordinator until they hand it over in "
    "writing. Every incident gets a timeline, a customer note if customers "
    "noticed it, and a review within five working days. The review names no "
    "culprits; it lists what happened, what helped, what hurt and what will "
    "change, each change with an owner and a date. Access to production is "
    "granted for a day at a time through the access tool, and every grant is "
    "logged. Secrets live in the vault, never in repositories, tickets or chat. "
    "Backups run every night and are restored once a month to prove they work; "
    "the restore is logged with its duration. On-call rotates weekly on "
    "Mondays at ten; the person going off call writes a handover note listing "
    "open alerts, flaky checks and anything unusual. Alerts that fire without "
    "needing action are fixed or deleted within two weeks. New services need "
    "an owner, a runbook, dashboards for latency, errors and saturation, and "
    "an entry in the service catalogue before they take traffic. Costs are "
    "reviewed at the start of each month; anything that grew by more than a "
    "fifth gets a short explanation from its owner. Documentation lives next "
    "to the code it describes and is reviewed with it. Meetings have an agenda "
    "sent a day before and notes sent the same day. Decisions are written down "
    "with the options considered and why one was chosen. When you answer, be "
    "brief and concrete, quote the handbook where it applies, and say plainly "
    "when the handbook does not cover the question. "
)


def log(*a):
    print("==>", *a, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------
# llama.cpp worker: N sequences in one batch
# --------------------------------------------------------------------------


def llama_worker(args):
    import llama_cpp
    import numpy as np

    spec = json.load(open(args.worker_spec))
    prompts = spec["prompt_ids"]
    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(args.model).encode(), mparams)
    most = max(args.streams)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = 4096
    cparams.n_batch = 1024
    cparams.n_ubatch = 512
    cparams.n_seq_max = most
    cparams.n_threads = args.threads
    cparams.n_threads_batch = args.threads
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    batch = llama_cpp.llama_batch_init(2048, 0, most)

    def add(k, token, pos, seq, logits):
        batch.token[k] = token
        batch.pos[k] = pos
        batch.n_seq_id[k] = 1
        batch.seq_id[k][0] = seq
        batch.logits[k] = 1 if logits else 0

    def argmax(i):
        ptr = llama_cpp.llama_get_logits_ith(ctx, i)
        return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

    def run(n, max_tokens):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        seqs = [prompts[i % len(prompts)] for i in range(n)]
        t0 = time.perf_counter()
        k = 0
        last = []
        for s, ids in enumerate(seqs):
            for j, t in enumerate(ids):
                add(k, t, j, s, j == len(ids) - 1)
                k += 1
            last.append(k - 1)
        batch.n_tokens = k
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed on the prompts")
        toks = [argmax(i) for i in last]
        t_first = time.perf_counter()
        outs = [[t] for t in toks]
        pos = [len(ids) for ids in seqs]
        for _ in range(max_tokens - 1):  # EOS ignored on purpose
            for s in range(n):
                add(s, toks[s], pos[s], s, True)
                pos[s] += 1
            batch.n_tokens = n
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise SystemExit("llama_decode failed while decoding")
            toks = [argmax(s) for s in range(n)]
            for s in range(n):
                outs[s].append(toks[s])
        t_end = time.perf_counter()
        decode_ms = (t_end - t_first) * 1e3
        return {
            "decode_tps": n * (max_tokens - 1) * 1e3 / decode_ms,
            "wall_ms": (t_end - t0) * 1e3,
            "ttft_ms": (t_first - t0) * 1e3,
            "completion_tokens": [len(o) for o in outs],
        }

    for _ in range(args.warmup):
        run(most, 16)
    out = {}
    for n in args.streams:
        runs = [run(n, args.max_tokens) for _ in range(args.runs)]
        out[str(n)] = {
            "decode_tps_median": median([r["decode_tps"] for r in runs]),
            "wall_ms_median": median([r["wall_ms"] for r in runs]),
            "runs": runs,
        }
    llama_cpp.llama_batch_free(batch)
    json.dump({
        "engine": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "threads": args.threads,
        "streams": out,
    }, sys.stdout)


def child(cmd, env):
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout)


def streams_part(args, report):
    env = dict(os.environ)
    streams = ",".join(str(n) for n in args.streams)
    ours, peers = [], []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "prompts.json"
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}: skillkernel, {streams} streams")
            o = child([str(args.bin), "--model", str(args.model), "--threads", str(args.threads),
                       "--streams", streams, "--max-tokens", str(args.max_tokens),
                       "--runs", str(args.runs), "--warmup", str(args.warmup)], env)
            ours.append(o)
            spec.write_text(json.dumps({"prompt_ids": o["prompt_ids"]}))
            log(f"round {r + 1}/{args.rounds}: llama.cpp, {streams} sequences in one batch")
            cmd = [sys.executable, __file__, "--llama-worker", "--worker-spec", str(spec),
                   "--model", str(args.model), "--threads", str(args.threads),
                   "--streams", streams, "--max-tokens", str(args.max_tokens),
                   "--runs", str(args.runs), "--warmup", str(args.warmup)]
            peers.append(child(cmd, env))

    def tps(rounds, n):
        return median([run["decode_tps"] for d in rounds for run in d["streams"][str(n)]["runs"]])

    one, most = min(args.streams), max(args.streams)
    s = {
        "ours": {n: tps(ours, n) for n in args.streams},
        "llama": {n: tps(peers, n) for n in args.streams},
        "tokens": {n: [run["completion_tokens"] for d in ours for run in d["streams"][str(n)]["runs"]][-1]
                   for n in args.streams},
        "llama_version": peers[0]["llama_cpp_python"],
    }
    s["batch_vs_one"] = s["ours"][most] / s["ours"][one]
    s["batch_vs_llama"] = s["ours"][most] / s["llama"][most]
    s["one_vs_llama"] = s["ours"][one] / s["llama"][one]
    s["llama_batch_vs_one"] = s["llama"][most] / s["llama"][one]
    report["streams"] = {"summary": s, "ours": ours, "llama": peers}
    return s


# --------------------------------------------------------------------------
# Daemon part
# --------------------------------------------------------------------------


def write_skills(root: Path) -> Path:
    skills = root / "skills"
    shutil.copytree(ROOT / "examples/skills/pros-cons", skills / "pros-cons")
    (skills / "handbook").mkdir(parents=True)
    template = HEAD.replace("\n", " ") + "\n\nQuestion: {{ input }}\nAnswer:"
    (skills / "handbook/skill.json").write_text(json.dumps({
        "name": "handbook",
        "version": "1.0.0",
        "description": "Answers questions from the operations handbook.",
        "type": "prompt",
        "template": template,
        "generation": {"max_tokens": 8, "temperature": 0},
    }))
    return skills


def timed_cell(kc, code, timeout=300):
    """(wall ms, first answer display ms, reply content)."""
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    first = None
    reply = None
    while reply is None:
        try:
            msg = kc.get_iopub_msg(timeout=0.05)
            if (msg["parent_header"].get("msg_id") == msg_id and first is None
                    and msg["msg_type"] in ("display_data", "stream")):
                first = (time.perf_counter() - t0) * 1e3
        except Exception:  # noqa: BLE001 — queue.Empty
            pass
        try:
            r = kc.get_shell_msg(timeout=0)
            if r["parent_header"].get("msg_id") == msg_id:
                reply = r
        except Exception:  # noqa: BLE001
            pass
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"no reply to {code!r} within {timeout} s")
    wall = (time.perf_counter() - t0) * 1e3
    # Drain what is left of this cell's output.
    time.sleep(0.05)
    while True:
        try:
            kc.get_iopub_msg(timeout=0.01)
        except Exception:  # noqa: BLE001
            break
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"{code!r} failed: {reply['content']}")
    return wall, first, reply


def daemon_config(name, binary, max_sequences):
    candle = "" if max_sequences is None else f"max_sequences = {max_sequences}\n"
    return {"name": name, "binary": binary,
            "candle": candle + "\n[models.cache]\nenabled = false\n"}


def daemon_part(args, report):
    from soak_bench import Daemon  # noqa: E402

    configs = [daemon_config("batching", args.binary, 4), daemon_config("serial", args.binary, 1)]
    if args.baseline_binary:
        configs.append(daemon_config("baseline", args.baseline_binary, None))
    results = {c["name"]: {"workflow_ms": [], "first_ttft_ms": [], "second_ttft_ms": []} for c in configs}
    for r in range(args.rounds):
        for c in configs:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                skills = write_skills(root)
                d = Daemon(c["binary"], root, str(args.model.parent), str(skills),
                           generation="max_tokens = 96\n", candle=c["candle"])
                d.start()
                try:
                    kc = d.client()
                    timed_cell(kc, "%skill run handbook -- Warm up.")  # loads the model
                    res = results[c["name"]]
                    for decision in DECISIONS[: args.workflow_runs]:
                        wall, _, _ = timed_cell(kc, f"%skill run pros-cons -- {decision}")
                        res["workflow_ms"].append(wall)
                    for first_q, second_q in QUESTIONS[: args.prefix_runs]:
                        timed_cell(kc, "%clear --conversation")
                        _, first, _ = timed_cell(kc, f"%skill run handbook -- {first_q}")
                        _, second, reply = timed_cell(kc, f"%skill run handbook -- {second_q}")
                        res["first_ttft_ms"].append(first)
                        res["second_ttft_ms"].append(second)
                    kc.stop_channels()
                finally:
                    d.stop()
            log(f"round {r + 1}/{args.rounds} {c['name']}: workflow "
                f"{median(results[c['name']]['workflow_ms']):.0f} ms, TTFT "
                f"{median(results[c['name']]['first_ttft_ms']):.0f} → "
                f"{median(results[c['name']]['second_ttft_ms']):.0f} ms")
    s = {name: {k: median(v) for k, v in res.items()} for name, res in results.items()}
    s["workflow_vs_serial"] = s["batching"]["workflow_ms"] / s["serial"]["workflow_ms"]
    if "baseline" in s:
        s["workflow_vs_baseline"] = s["batching"]["workflow_ms"] / s["baseline"]["workflow_ms"]
    s["prefix_ttft"] = s["batching"]["second_ttft_ms"] / s["batching"]["first_ttft_ms"]
    report["daemon"] = {"summary": s, "runs": results}
    return s


def markdown(report, args):
    lines = [f"Machine: {machine()}; {args.threads} threads; model {args.model.name}.", ""]
    ok = lambda v, t, le=False: "✅" if (v <= t if le else v >= t) else "❌"  # noqa: E731
    if "streams" in report:
        s = report["streams"]["summary"]
        one, most = min(args.streams), max(args.streams)
        lines += [
            f"| engine | {one} stream | {most} streams | {most} vs {one} |",
            "|---|---|---|---|",
            f"| skillkernel | {s['ours'][one]:.1f} tok/s | {s['ours'][most]:.1f} tok/s | {s['batch_vs_one']:.2f}× |",
            f"| llama.cpp {s['llama_version']} (one batch) | {s['llama'][one]:.1f} tok/s | "
            f"{s['llama'][most]:.1f} tok/s | {s['llama_batch_vs_one']:.2f}× |",
            "",
            f"* aggregate decode, {most} streams vs one: {s['batch_vs_one']:.2f}× "
            f"(target ≥ {TARGETS['batch_vs_one']}) {ok(s['batch_vs_one'], TARGETS['batch_vs_one'])}",
            f"* {most} streams vs llama.cpp's {most}-sequence batch: {s['batch_vs_llama']:.2f}× "
            f"(target ≥ {TARGETS['batch_vs_llama']}) {ok(s['batch_vs_llama'], TARGETS['batch_vs_llama'])}",
            f"* tokens per stream (last run): {s['tokens'][most]}",
            "",
        ]
    if "daemon" in report:
        s = report["daemon"]["summary"]
        lines += [
            "| daemon | pros-cons wall | handbook TTFT, first run | second run |",
            "|---|---|---|---|",
        ]
        for name in ("batching", "serial", "baseline"):
            if name in s:
                v = s[name]
                lines.append(f"| {name} | {v['workflow_ms']:.0f} ms | {v['first_ttft_ms']:.0f} ms | "
                             f"{v['second_ttft_ms']:.0f} ms |")
        lines += [
            "",
            f"* pros-cons, batching vs one at a time: {s['workflow_vs_serial']:.2f}× "
            f"(target ≤ {TARGETS['workflow_vs_serial']}) "
            f"{ok(s['workflow_vs_serial'], TARGETS['workflow_vs_serial'], le=True)}",
        ]
        if "workflow_vs_baseline" in s:
            lines.append(f"* pros-cons vs the baseline build: {s['workflow_vs_baseline']:.2f}×")
        lines.append(f"* second run's time to first token vs the first's: {s['prefix_ttft']:.2f}× "
                     f"(target ≤ {TARGETS['prefix_ttft']}) {ok(s['prefix_ttft'], TARGETS['prefix_ttft'], le=True)}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["streams", "daemon", "all"], default="all")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--bin", type=Path, help="the batch_bench example binary")
    ap.add_argument("--binary", help="the release skillkernel binary (daemon part)")
    ap.add_argument("--baseline-binary", help="an older skillkernel build to compare the workflow with")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--streams", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--workflow-runs", type=int, default=5)
    ap.add_argument("--prefix-runs", type=int, default=4)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--llama-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-spec", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.llama_worker:
        llama_worker(args)
        return
    report = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    if args.part in ("streams", "all"):
        streams_part(args, report)
    if args.part in ("daemon", "all"):
        daemon_part(args, report)
    md = markdown(report, args)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
