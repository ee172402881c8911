#!/usr/bin/env python3
"""Remote backends (issue 13, see docs/performance.md), against real
llama-cpp-python servers serving the default model file:

* time to first token of a prompt cell on an `openai` backend against a
  direct streaming HTTP client on the same server, interleaved in one run
  (target: the kernel adds <= 2 ms);
* a pool of three servers, one killed (SIGKILL) a quarter of the way into
  a run of prompt cells: how many cells fail, and which (target: none
  after the first that meets the dead host).

Usage: remote_bench.py --bin target/release/skillkernel --model FILE
       [--ttft-runs N] [--pool-requests N] [--out results.json]
Needs the llama venv (llama_cpp.server) and jupyter_client + pyzmq.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import zmq
from jupyter_client.connect import write_connection_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kernel_bench import WireClient  # noqa: E402
from benchlib import machine, summary  # noqa: E402

now_ns = time.perf_counter_ns
ALIAS = "smollm2-remote"
PROMPT = "Name three colours."
MAX_TOKENS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `python -m llama_cpp.server` on a free loopback port."""

    def __init__(self, model: str, root: Path, i: int):
        self.port = free_port()
        self.log = root / f"llama-{i}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", model,
                 "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
                 "--n_ctx", "1024", "--n_threads", "1", "--verbose", "false"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout_s: float = 120.0):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"llama_cpp.server exited: {self.log.read_text(errors='replace')}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/v1/models")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit(f"llama_cpp.server on {self.port} did not answer")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def direct_ttft_ms(port: int) -> float:
    """A streaming chat completion; ms from sending to the first content."""
    body = json.dumps({
        "model": ALIAS, "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0.0,
        "messages": [{"role": "user", "content": PROMPT}],
    })
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = now_ns()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first = None
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        if first is None:
            delta = json.loads(data)["choices"][0].get("delta", {})
            if delta.get("content"):
                first = now_ns()
    conn.close()
    if first is None:
        sys.exit("the direct stream carried no text")
    return (first - t0) / 1e6


class Daemon:
    """`skillkernel start` with only the given openai backend."""

    def __init__(self, binary: str, root: Path, urls: list[str]):
        self.root = root
        config = root / "config.toml"
        config.write_text(
            f'[models]\ndefault = "{ALIAS}@fleet"\norder = ["fleet"]\nsystem_prompt = ""\n'
            f"[models.generation]\nmax_tokens = {MAX_TOKENS}\ntemperature = 0.0\n"
            "[models.cache]\nenabled = false\n"
            f'[models.backends.fleet]\nkind = "openai"\nurls = {json.dumps(urls)}\n'
            "[skills]\nproject = false\nbuiltin = false\n")
        conn_file, conn = write_connection_file(
            str(root / f"kernel-{uuid.uuid4().hex[:8]}.json"), ip="127.0.0.1",
            key=uuid.uuid4().hex.encode())
        self.conn = dict(conn)
        if isinstance(self.conn.get("key"), bytes):
            self.conn["key"] = self.conn["key"].decode()
        env = dict(os.environ, SKILLKERNEL_SYSTEM_CONFIG="", XDG_CONFIG_HOME=str(root / "xdg"),
                   XDG_DATA_HOME=str(root / "xdg-data"))
        self.log = root / "daemon.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, "start", "-f", conn_file, "--config", str(config),
                 "--state-dir", str(root / "state")],
                env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def cell(client: WireClient, code: str, timeout_s: float = 60.0) -> tuple[float | None, dict]:
    """Runs `code`; returns (ms to the first display of text, execute_reply)."""
    t0 = now_ns()
    msg_id = client.execute(code)
    first = None
    reply = None
    idle = False
    deadline = time.time() + timeout_s
    while reply is None or not idle:
        if time.time() > deadline:
            sys.exit(f"no answer to {code!r} within {timeout_s}s")
        for sock, _ in client.poller.poll(1000):
            frames = sock.recv_multipart()
            t = now_ns()
            kind, parent, content = client.parse(
                frames, want_content_for=("status", "display_data", "execute_reply"))
            if parent != msg_id:
                continue
            if kind == "display_data" and first is None:
                if content.get("data", {}).get("text/markdown"):
                    first = t
            elif kind == "execute_reply":
                reply = content
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
    return (None if first is None else (first - t0) / 1e6), reply


def connect(daemon: Daemon, ctx) -> WireClient:
    client = WireClient(daemon.conn, ctx)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            _, reply = cell(client, "%set warm = 1", timeout_s=2)
            if reply.get("status") == "ok":
                return client
        except SystemExit:
            pass
    sys.exit(f"the daemon did not answer: {daemon.log.read_text(errors='replace')}")


def bench_ttft(binary: str, server: Server, root: Path, ctx, runs: int) -> dict:
    (root / "ttft").mkdir()
    daemon = Daemon(binary, root / "ttft", [server.url])
    client = connect(daemon, ctx)
    direct, kernel = [], []
    code = f"%%prompt\n{PROMPT}"
    for _ in range(3):  # warm both paths (connections, the server's caches)
        direct_ttft_ms(server.port)
        cell(client, code)
    for _ in range(runs):
        direct.append(direct_ttft_ms(server.port))
        ms, reply = cell(client, code)
        if reply.get("status") != "ok" or ms is None:
            sys.exit(f"prompt cell failed: {reply}")
        kernel.append(ms)
    client.close()
    daemon.stop()
    d, k = summary(direct), summary(kernel)
    return {"direct": d, "kernel": k,
            "overhead_p50_ms": round(k["p50_ms"] - d["p50_ms"], 2),
            "overhead_p95_ms": round(k["p95_ms"] - d["p95_ms"], 2)}


def bench_pool(binary: str, servers: list[Server], root: Path, ctx, requests: int) -> dict:
    (root / "pool").mkdir()
    daemon = Daemon(binary, root / "pool", [s.url for s in servers])
    client = connect(daemon, ctx)
    kill_at = requests // 4
    failed = []
    t0 = time.time()
    for i in range(requests):
        if i == kill_at:
            servers[1].kill()
        _, reply = cell(client, f"%%prompt\n{PROMPT}")
        if reply.get("status") != "ok":
            failed.append({"request": i, "error": reply.get("evalue", "")[:200]})
    elapsed = time.time() - t0
    client.close()
    daemon.stop()
    log = daemon.log.read_text(errors="replace")
    return {"requests": requests, "killed_before": kill_at, "failed": failed,
            "failed_after_first_detection": max(0, len(failed) - 1),
            "attempts_failed_over": log.count("attempt failed"),
            "seconds": round(elapsed, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ttft-runs", type=int, default=60)
    ap.add_argument("--pool-requests", type=int, default=200)
    ap.add_argument("--out")
    args = ap.parse_args()
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers = [Server(args.model, root, i) for i in range(3)]
        try:
            for s in servers:
                s.wait_ready()
            ttft = bench_ttft(args.bin, servers[0], root, ctx, args.ttft_runs)
            pool = bench_pool(args.bin, servers, root, ctx, args.pool_requests)
        finally:
            for s in servers:
                s.kill()
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "ttft": ttft, "pool": pool}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    ttft_ok = ttft["overhead_p50_ms"] <= 2.0
    pool_ok = pool["failed_after_first_detection"] == 0
    print(f"TTFT overhead p50 {ttft['overhead_p50_ms']} ms (target <= 2 ms): {'met' if ttft_ok else 'MISSED'}")
    print(f"pool: {len(pool['failed'])} of {pool['requests']} failed; "
          f"after the first detection {pool['failed_after_first_detection']}: {'met' if pool_ok else 'MISSED'}")


if __name__ == "__main__":
    main()
