"""Soak benchmark: a release daemon under long mixed work, sampled from
outside (see docs/performance.md, "Soak").

Modes:

* ``mixed`` (default) — for ``--duration`` seconds, at once: a client
  running trivial cells, prompt cells on the default model (a new
  conversation every tenth), a prompt skill, ``!`` commands, clients
  connecting and leaving, one IOPub subscriber that subscribes and never
  reads, SIGUSR1 (reload) and SIGUSR2 (state dump) every minute.
* ``cells`` — ``--cells N`` trivial cells as fast as one client can send
  them, with ``--stalled`` adding the subscriber that never reads.
* ``conversation`` — ``--turns N`` prompt cells of one conversation on the
  default model (the daemon's default generation settings), then idle
  until the KV cache is dropped (``--kv-idle-secs``): RSS after load,
  after each turn and after the drop, against the model file's size.

Every ``--interval`` seconds it samples the daemon's RSS, open descriptors,
threads, child processes and the state directory's size into
``soak.csv``, and draws each over time into ``soak-<metric>.png``. The
summary (``summary.json``, also printed) gives each metric after the
first five minutes (or the first sample, for runs shorter than ten
minutes: the idle daemon), its peak and its end, and the change.

Needs jupyter_client and matplotlib (``scripts/bench-soak`` installs them).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jupyter_client import BlockingKernelClient

import benchlib

METRICS = ["rss_mib", "fds", "threads", "children", "state_mib"]


class Daemon:
    """A release daemon in its own directory, started with ``start``."""

    def __init__(
        self, binary: str, root: Path, model_dir: str, skills: str,
        persist: bool = True, generation: str = "max_tokens = 96\n", candle: str = "",
    ):
        self.binary = binary
        self.root = root
        self.pid_file = root / "run/skillkernel.pid"
        self.connection_file = root / "run/kernel.json"
        self.state_dir = root / "state"
        config = root / "config.toml"
        config.write_text(
            f'[models]\ndir = "{model_dir}"\n\n'
            f"[models.generation]\n{generation}\n"
            f"[models.candle]\n{candle}\n"
            f'[skills]\ndirs = ["{skills}"]\nproject = false\ntrust = "all"\n\n'
            f"[state]\npersist = {'true' if persist else 'false'}\n"
        )
        self.argv = [
            binary, "start", "--daemon",
            "--config", str(config),
            "--pid-file", str(self.pid_file),
            "--connection-file", str(self.connection_file),
            "--state-dir", str(self.state_dir),
            "--log-dir", str(root / "log"),
            "--session", "soak",
        ]
        self.env = dict(os.environ)
        self.env.update(
            SKILLKERNEL_SYSTEM_CONFIG="",
            XDG_CONFIG_HOME=str(root / "xdg"),
            XDG_DATA_HOME=str(root / "data"),
            JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        )

    def start(self) -> None:
        done = subprocess.run(self.argv, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"start failed: {done.stderr}")

    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def stop(self) -> None:
        try:
            os.kill(self.pid(), signal.SIGTERM)
        except (OSError, ValueError):
            pass

    def client(self) -> BlockingKernelClient:
        kc = BlockingKernelClient(connection_file=str(self.connection_file))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        return kc

    def sample(self) -> dict:
        pid = self.pid()
        status = Path(f"/proc/{pid}/status").read_text()
        field = lambda name: int(next(l.split()[1] for l in status.splitlines() if l.startswith(name)))
        children = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
                        children += 1
                except (OSError, IndexError, ValueError):
                    pass
        state = 0
        for base, _, files in os.walk(self.state_dir):
            for f in files:
                try:
                    state += os.path.getsize(os.path.join(base, f))
                except OSError:
                    pass
        return {
            "rss_mib": round(field("VmRSS:") / 1024, 2),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": field("Threads:"),
            "children": children,
            "state_mib": round(state / (1 << 20), 2),
        }


def stalled_subscriber(port: int) -> socket.socket:
    """A ZMTP 3.0 SUB that subscribes to everything and then never reads:
    its receive buffer fills and the daemon's queue for it with it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    s.sendall(greeting)
    name, value = b"Socket-Type", b"SUB"
    body = b"\x05READY" + bytes([len(name)]) + name + struct.pack(">I", len(value)) + value
    s.sendall(bytes([0x04, len(body)]) + body)
    s.sendall(b"\x00\x01\x01")  # a message frame: subscribe to "" (ZMTP 3.0)
    return s


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def add(self, what: str, ok: bool = True) -> None:
        with self.lock:
            table = self.counts if ok else self.errors
            table[what] = table.get(what, 0) + 1


def run_cell(kc: BlockingKernelClient, code: str, timeout: float = 120) -> bool:
    reply = kc.execute(code, reply=True, timeout=timeout)
    return reply["content"]["status"] == "ok"


def loop(stop: threading.Event, every: float, work, what: str, counters: Counters) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            counters.add(what, work())
        except Exception as e:  # noqa: BLE001 — counted and the soak goes on
            counters.add(what, False)
            print(f"{what}: {e}", file=sys.stderr)
        stop.wait(max(0.0, every - (time.monotonic() - started)))


def mixed(d: Daemon, stop: threading.Event, counters: Counters) -> list[threading.Thread]:
    cells, prompts, skills, shell = d.client(), d.client(), d.client(), d.client()
    n = {"cell": 0, "prompt": 0}

    def cell():
        n["cell"] += 1
        return run_cell(cells, f"%set soak = {n['cell']}")

    def prompt():
        n["prompt"] += 1
        if n["prompt"] % 10 == 0:
            run_cell(prompts, "%clear --conversation")
        return run_cell(prompts, f"Give me one idea for a weekend project, number {n['prompt']}.")

    def skill():
        return run_cell(skills, "%skill run headline -- A daemon ran for an hour and its memory stayed flat.")

    def command():
        return run_cell(shell, "!echo soak")

    def churn():
        kc = d.client()
        kc.kernel_info(reply=True, timeout=30)
        kc.stop_channels()
        return True

    def signals():
        os.kill(d.pid(), signal.SIGUSR1)
        time.sleep(30)
        os.kill(d.pid(), signal.SIGUSR2)
        return True

    plan = [
        (0.005, cell, "cells"),
        (20.0, prompt, "prompts"),
        (15.0, skill, "skills"),
        (2.0, command, "commands"),
        (3.0, churn, "connections"),
        (60.0, signals, "signal_pairs"),
    ]
    return [
        threading.Thread(target=loop, args=(stop, every, work, what, counters), daemon=True)
        for every, work, what in plan
    ]


def cells_only(d: Daemon, stop: threading.Event, counters: Counters, total: int) -> list[threading.Thread]:
    kc = d.client()

    def work():
        for i in range(total):
            if stop.is_set():
                return
            counters.add("cells", run_cell(kc, f"%set soak = {i}"))
        stop.set()

    return [threading.Thread(target=work, daemon=True)]


def conversation(d: Daemon, turns: int, idle_secs: float, model_file: Path) -> dict:
    kc = d.client()
    questions = [
        "Tell me about the history of Paris.", "What are its most famous museums?",
        "Describe the Louvre's collection.", "Which painters worked in Montmartre?",
        "How did the Impressionists change painting?", "Who was Claude Monet?",
        "What is special about his water lilies?", "Where can I see them today?",
        "Suggest a three-day plan for an art lover in Paris.",
        "Summarise our conversation in a few sentences.",
    ]
    before = d.sample()["rss_mib"]
    after = []
    for i in range(turns):
        ok = run_cell(kc, questions[i % len(questions)], timeout=600)
        after.append(d.sample()["rss_mib"])
        print(f"turn {i + 1}: ok={ok} rss {after[-1]} MiB", file=sys.stderr, flush=True)
    time.sleep(idle_secs + 3)
    dropped = d.sample()["rss_mib"]
    model_mib = model_file.stat().st_size / (1 << 20)
    return {
        "machine": benchlib.machine(),
        "mode": "conversation",
        "model_file_mib": round(model_mib, 1),
        "rss_before_first_turn_mib": before,
        "rss_after_turn_mib": after,
        "rss_after_idle_drop_mib": dropped,
        "peak_above_model_file_mib": round(max(after) - model_mib, 1),
        "after_drop_above_turn_1_mib": round(dropped - after[0], 1),
    }


def plot(rows: list[dict], out: Path, title: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    t = [r["t_s"] / 60 for r in rows]
    for metric in METRICS:
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot(t, [r[metric] for r in rows], lw=1.2)
        ax.set_xlabel("minutes")
        ax.set_ylabel(metric)
        ax.set_title(f"{title}: {metric}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"soak-{metric}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--skills", required=True, help="a skills directory (examples/skills)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=["mixed", "cells", "conversation"], default="mixed")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--kv-idle-secs", type=float, default=10)
    ap.add_argument("--duration", type=float, default=3600)
    ap.add_argument("--interval", type=float, default=5)
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--stalled", action="store_true", help="cells mode: add a subscriber that never reads")
    ap.add_argument("--no-persist", action="store_true", help="keep the session in memory only ([state] persist = false)")
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    if a.mode == "conversation":
        # The daemon's own generation defaults, a short KV idle time.
        d = Daemon(a.binary, root, a.model_dir, a.skills, generation="",
                   candle=f"kv_cache_idle_secs = {int(a.kv_idle_secs)}\n")
        d.start()
        try:
            model_file = Path(a.model_dir) / "SmolLM2-135M-Instruct.Q4_1.gguf"
            summary = conversation(d, a.turns, a.kv_idle_secs, model_file)
        finally:
            d.stop()
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
        return
    d = Daemon(a.binary, root, a.model_dir, a.skills, persist=not a.no_persist)
    d.start()
    stalled = None
    stop = threading.Event()
    counters = Counters()
    rows: list[dict] = []
    started = time.monotonic()
    try:
        warm = d.client()
        run_cell(warm, "%set warm = 1")
        time.sleep(1)
        idle = d.sample()
        if a.mode == "mixed" or a.stalled:
            info = json.loads(d.connection_file.read_text())
            stalled = stalled_subscriber(info["iopub_port"])
        threads = mixed(d, stop, counters) if a.mode == "mixed" else cells_only(d, stop, counters, a.cells)
        for th in threads:
            th.start()
        deadline = started + (a.duration if a.mode == "mixed" else 10 * 24 * 3600)
        while time.monotonic() < deadline and not stop.is_set():
            row = {"t_s": round(time.monotonic() - started, 1), **d.sample()}
            with counters.lock:
                row.update(counters.counts)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            stop.wait(a.interval)
        stop.set()
        rows.append({"t_s": round(time.monotonic() - started, 1), **d.sample(), **counters.counts})
        for th in threads:
            th.join(timeout=150)
    finally:
        stop.set()
        d.stop()
        if stalled:
            stalled.close()

    fields = ["t_s", *METRICS, *sorted({k for r in rows for k in r} - {"t_s", *METRICS})]
    with open(out / "soak.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    base = next((r for r in rows if r["t_s"] >= 300), rows[0]) if rows[-1]["t_s"] >= 600 else idle
    end = rows[-1]
    summary = {
        "machine": benchlib.machine(),
        "mode": a.mode,
        "stalled_subscriber": a.mode == "mixed" or a.stalled,
        "persist": not a.no_persist,
        "seconds": end["t_s"],
        "counts": counters.counts,
        "errors": counters.errors,
        "idle": idle,
        "baseline": base,
        "peak": {m: max(r[m] for r in rows) for m in METRICS},
        "end": {m: end[m] for m in METRICS},
        "change_from_baseline_percent": {
            m: round(100 * (end[m] - base[m]) / base[m], 1) if base[m] else None for m in METRICS
        },
        "rss_above_idle_mib": round(max(r["rss_mib"] for r in rows) - idle["rss_mib"], 1),
        "plots": plot(rows, out, f"soak ({a.mode})"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
