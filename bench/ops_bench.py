#!/usr/bin/env python3
"""Operations benchmark: the daemon as a service manager sees it.

Measures, on the release binary, in private temporary directories:

* start   — `skillkernel start --daemon …` run to the launcher's exit
            (the launcher exits once the kernel serves: the figure a
            `Type=forking` unit waits for);
* dump    — SIGUSR2 sent → the dump file present in <state>/dumps (it is
            renamed into place complete, so presence means complete);
* stop    — SIGTERM to an idle daemon (with a few cells of state) → the
            process gone, with its six shutdown phases done;
* restore — with N history entries persisted (default 10,000), `start
            --daemon` to ready, and to the first kernel_info_reply.

Each figure is repeated (--runs) and reported as p50 / p95 / max in ms.
jupyter_client is used only to fill the history (pipelined executes) and
for the kernel_info check.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client import BlockingKernelClient

now = time.perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, summary  # noqa: E402


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(") ", 1)[1][0]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        return False


class Daemon:
    """One daemon's directory and its start command."""

    def __init__(self, binary: str, root: Path, session: str = "bench"):
        self.binary = binary
        self.root = root
        self.pid_file = root / "run/skillkernel.pid"
        self.connection_file = root / "run/kernel.json"
        self.state_dir = root / "state"
        self.log_dir = root / "log"
        self.session = session
        self.env = dict(os.environ)
        self.env.update(
            SKILLKERNEL_SYSTEM_CONFIG="",
            XDG_CONFIG_HOME=str(root / "xdg"),
            JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        )

    def start(self) -> float:
        """Runs the launcher; returns its wall time in ms."""
        argv = [
            self.binary, "start", "--daemon",
            "--pid-file", str(self.pid_file),
            "--connection-file", str(self.connection_file),
            "--state-dir", str(self.state_dir),
            "--log-dir", str(self.log_dir),
            "--session", self.session,
        ]
        t = now()
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        took = (now() - t) * 1000
        if done.returncode != 0:
            sys.exit(f"start failed: {done.stderr}")
        return took

    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def stop(self) -> float:
        """SIGTERM → process gone, in ms."""
        pid = self.pid()
        t = now()
        os.kill(pid, signal.SIGTERM)
        while alive(pid):
            time.sleep(0.0002)
        return (now() - t) * 1000

    def client(self) -> BlockingKernelClient:
        kc = BlockingKernelClient(connection_file=str(self.connection_file))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        return kc


def bench_start(binary: str, runs: int) -> dict:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            d = Daemon(binary, Path(tmp))
            times.append(d.start())
            d.stop()
    return summary(times)


def bench_dump(binary: str, runs: int) -> dict:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(binary, Path(tmp))
        d.start()
        dumps = d.state_dir / "dumps"
        pid = d.pid()
        for _ in range(runs):
            before = set(dumps.glob("skillkernel-*.json")) if dumps.exists() else set()
            t = now()
            os.kill(pid, signal.SIGUSR2)
            while True:
                if dumps.exists() and set(dumps.glob("skillkernel-*.json")) - before:
                    break
                time.sleep(0.0002)
            times.append((now() - t) * 1000)
            time.sleep(0.05)
        d.stop()
    return summary(times)


def bench_stop(binary: str, runs: int) -> dict:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            d = Daemon(binary, Path(tmp))
            d.start()
            kc = d.client()
            for code in ["%set x = 1", "!echo hi", "%get x"]:
                kc.execute_interactive(code, timeout=30, output_hook=lambda m: None)
            kc.stop_channels()
            time.sleep(0.2)
            times.append(d.stop())
            log = "".join(p.read_text(errors="replace") for p in d.log_dir.glob("*") if p.suffix != ".lz4")
            if "Complete" not in log:
                sys.exit("the shutdown did not log its Complete phase")
    return summary(times)


def fill_history(d: Daemon, entries: int) -> None:
    kc = d.client()
    batch = 500
    sent = 0
    while sent < entries:
        n = min(batch, entries - sent)
        ids = {kc.execute(f"%set v = {sent + i}", store_history=True) for i in range(n)}
        while ids:
            reply = kc.get_shell_msg(timeout=60)
            ids.discard(reply["parent_header"].get("msg_id"))
        sent += n
    kc.stop_channels()


def bench_restore(binary: str, runs: int, entries: int) -> dict:
    ready, first_info = [], []
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(binary, Path(tmp))
        d.start()
        fill_history(d, entries)
        d.stop()
        for _ in range(runs):
            t = now()
            d.start()
            ready.append((now() - t) * 1000)
            kc = BlockingKernelClient(connection_file=str(d.connection_file))
            kc.load_connection_file()
            kc.start_channels()
            kc.kernel_info()
            kc.get_shell_msg(timeout=30)
            first_info.append((now() - t) * 1000)
            hist = kc.history(hist_access_type="tail", n=1, reply=True, timeout=30)
            kc.stop_channels()
            d.stop()
            last = hist["content"]["history"]
            if not last or last[-1][1] < entries:
                sys.exit(f"history not restored: {last}")
    return {"entries": entries, "to_ready": summary(ready), "to_kernel_info": summary(first_info)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {"machine": machine()}
    for name, fn in [
        ("start_daemon_to_ready", lambda: bench_start(args.binary, args.runs)),
        ("sigusr2_to_dump", lambda: bench_dump(args.binary, args.runs * 2)),
        ("sigterm_idle_to_exit", lambda: bench_stop(args.binary, args.runs)),
        ("restore_history", lambda: bench_restore(args.binary, max(3, args.runs // 2), args.entries)),
    ]:
        print(f"==> {name}", file=sys.stderr)
        results[name] = fn()
        print(json.dumps(results[name]), file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
