#!/usr/bin/env python3
"""Metrics benchmark (issue 17): what the Prometheus endpoint and trace
export cost.

Two release daemons with the same 500 generated command skills (each
runs `true` in the sandbox), one with `[metrics] listen` and `[tracing]
otlp_endpoint` exporting to a live OTLP receiver (tests/servers/
otlp_receiver.py, which decodes every span), and one with neither, in the
same run:

* scrape   — wall time of `GET /metrics` on the daemon with metrics,
             after every skill ran once there (so each has its per-skill
             families on the page: counters, errors, tokens, load and
             execution histograms), a fresh connection each, as
             Prometheus makes; p50/p95 over --scrapes; and the page's
             size and line count;
* rtt      — one trivial cell's round trip (execute_request → reply and
             status idle; kernel_bench's harness) on each daemon,
             interleaved, while a scraper thread scrapes the one with
             metrics every second (as a 1 s scrape interval would):
             p50 with metrics and tracing on / both off; and the spans
             the receiver got (every cell's request and cell spans must
             arrive).

Prints JSON (and appends it to --json when given).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, summary  # noqa: E402
from kernel_bench import WireClient, round_trip, wait_iopub_ready  # noqa: E402
from skills_bench import Daemon  # noqa: E402

TOKEN = "bench-token"


def metrics_address(d: Daemon, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"metrics endpoint listening on http://([0-9.:]+)/metrics",
                          d.log.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise TimeoutError("no metrics endpoint in the daemon's log")


def scrape(address: str) -> bytes:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200, response.status
    return body


SKILLS = 500
RECEIVER = Path(__file__).resolve().parent.parent / "tests/servers/otlp_receiver.py"


def start_receiver(spans: Path) -> tuple[subprocess.Popen, int]:
    """The receiver decodes every export; it only counts the spans."""
    proc = subprocess.Popen([sys.executable, str(RECEIVER), str(spans), "--count"],
                            stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first.startswith("listening "), first
    return proc, int(first.split()[1])


def spans_counted(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def generate(root: Path) -> list[str]:
    """SKILLS command skills under root; returns their names."""
    names = []
    for i in range(SKILLS):
        name = f"true-{i:03}"
        path = root / f"group-{i % 10}" / name / "skill.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"name: {name}\nversion: 1.0.0\ndescription: Runs true, for the metrics benchmark.\n"
            "type: command\ncommand: \"true\"\n"
        )
        names.append(name)
    return names


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--json")
    args = ap.parse_args()

    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = generate(tmp / "skills")
        spans_file = tmp / "spans.jsonl"
        receiver, receiver_port = start_receiver(spans_file)
        daemons = {}
        for name in ("on", "off"):
            root = tmp / name
            root.mkdir()
            d = Daemon(args.binary, root, tmp / "skills")
            if name == "on":
                with d.config.open("a") as f:
                    f.write(f'[metrics]\nlisten = "127.0.0.1:0"\nbearer_token = "{TOKEN}"\n'
                            f'[tracing]\notlp_endpoint = "http://127.0.0.1:{receiver_port}"\n'
                            "[state]\npersist = false\n")
            else:
                with d.config.open("a") as f:
                    f.write("[state]\npersist = false\n")
            _, conn = d.start()
            client = WireClient(conn, ctx)
            wait_iopub_ready(client, 60)
            daemons[name] = (d, client)
        try:
            address = metrics_address(daemons["on"][0])
            for name in names:
                round_trip(daemons["on"][1], f"%skill run {name}", timeout_ms=60_000)
            page = scrape(address)
            loaded = re.search(rb"^skillkernel_skills_loaded (\d+)$", page, re.M)
            assert loaded and int(loaded.group(1)) >= SKILLS, "the skills are loaded"
            ran = len(re.findall(rb"^skillkernel_skill_executions_total", page, re.M))
            assert ran >= SKILLS, f"{ran} skills on the page"
            times = []
            for _ in range(args.scrapes):
                t0 = time.perf_counter_ns()
                page = scrape(address)
                times.append((time.perf_counter_ns() - t0) / 1e6)

            stop = threading.Event()

            def scraper():
                while not stop.wait(1.0):
                    scrape(address)

            background = threading.Thread(target=scraper, daemon=True)
            background.start()
            rtt = {"on": [], "off": []}
            for _ in range(50):  # warm-up
                for name in rtt:
                    round_trip(daemons[name][1], "%set x = 1")
            for _ in range(args.cells):
                for name in rtt:
                    rtt[name].append(round_trip(daemons[name][1], "%set x = 1") / 1e6)
            stop.set()
            background.join()
            # Spans leave in batches at most a second after they end.
            expected = 2 * (args.cells + 50)
            deadline = time.monotonic() + 30
            while spans_counted(spans_file) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            spans_received = spans_counted(spans_file)
        finally:
            for d, _ in daemons.values():
                d.stop()
            receiver.kill()

    p50 = {name: statistics.median(v) for name, v in rtt.items()}
    result = {
        "bench": "metrics",
        "machine": machine(),
        "skills": SKILLS,
        "scrape_ms": summary(times),
        "page_bytes": len(page),
        "page_lines": page.count(b"\n"),
        "rtt_ms": {name: summary(v, 3) for name, v in rtt.items()},
        "rtt_p50_ratio_on_over_off": round(p50["on"] / p50["off"], 3),
        "spans_received": spans_received,
    }
    print(json.dumps(result, indent=2))
    assert spans_received >= 2 * args.cells, f"only {spans_received} spans arrived"
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
