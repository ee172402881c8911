#!/usr/bin/env python3
"""MCP benchmark: the daemon's skills as MCP tools, measured with the
official MCP Python SDK as the client (see docs/performance.md).

* round trip — one `tools/call` of a trivial skill (a prompt skill whose
  answer comes from the response cache: no model runs), one after
  another, through the stdio bridge (`skillctl mcp`) and over Streamable
  HTTP; p50/p95 in ms. The peer, in the same run: the MCP SDK's own
  server (`bench/mcp_peer_server.py`) with a tool that answers at once,
  over the same two transports and the same client.
* load — C MCP clients over HTTP (default 50) call the skill in a loop
  while a notebook client runs trivial cells (`%set x = 1`); each cell's
  round trip is compared with the same cells on an idle daemon (p50,
  p99), and every client's calls are counted (all must be answered).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
from jupyter_client import BlockingKernelClient
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, pct, summary  # noqa: E402

HERE = Path(__file__).resolve().parent
ARGS = {"input": "hello"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


class Daemon:
    """The daemon with one trivial skill and its MCP endpoint."""

    def __init__(self, binary: str, model_dir: str, root: Path):
        self.root = root
        self.port = free_port()
        self.connection_file = root / "kernel.json"
        skill = root / "skills/hello"
        skill.mkdir(parents=True)
        (skill / "skill.yaml").write_text(
            "name: hello\nversion: 1.0.0\ndescription: Says hello.\n"
            "type: prompt\ntemplate: \"Say hello to {{ input }}.\"\n"
        )
        token_file = root / "mcp-token"
        config = root / "config.toml"
        config.write_text(
            f'[models]\ndir = "{model_dir}"\n[models.generation]\nmax_tokens = 8\n'
            f"[models.cache]\nenabled = true\n"
            f'[skills]\ndirs = ["{root / "skills"}"]\nproject = false\nbuiltin = false\n'
            f'user_dir = "{root / "user-skills"}"\nwatch = false\n'
            f'[mcp.server]\nlisten = "127.0.0.1:{self.port}"\ntoken_file = "{token_file}"\n'
        )
        env = dict(os.environ)
        env.update(
            SKILLKERNEL_SYSTEM_CONFIG="",
            XDG_CONFIG_HOME=str(root / "xdg"),
            JUPYTER_RUNTIME_DIR=str(root / "runtime"),
            SKILLKERNEL_STATE_DIR=str(root / "state"),
            SKILLKERNEL_LOG="warn",
        )
        (root / "work").mkdir()
        self.proc = subprocess.Popen(
            [binary, "start", "-f", str(self.connection_file), "--config", str(config)],
            cwd=root / "work",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(root / "daemon.log", "w"),
        )
        wait_port(self.port, self.proc, "skillkernel")
        self.token = token_file.read_text().strip()
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def http_client(url: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0, read=300.0))
    return streamable_http_client(url, http_client=http)


async def round_trips(server, tool: str, arguments: dict, n: int, warmup: int) -> list[float]:
    async with Client(server, read_timeout_seconds=120) as client:
        for _ in range(warmup):
            await client.call_tool(tool, arguments)
        times = []
        for _ in range(n):
            started = time.perf_counter()
            result = await client.call_tool(tool, arguments)
            times.append((time.perf_counter() - started) * 1e3)
            if result.is_error:
                sys.exit(f"{tool} failed: {result}")
        return times


def cell_times(kc: BlockingKernelClient, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        reply = kc.execute_interactive("%set x = 1", timeout=60, output_hook=lambda _m: None)
        times.append((time.perf_counter() - started) * 1e3)
        if reply["content"]["status"] != "ok":
            sys.exit(f"a cell failed: {reply['content']}")
    return times


async def load(url: str, token: str, clients: int, stop: Path) -> tuple[list[int], list[str]]:
    """`clients` MCP clients calling the skill until `stop` exists."""
    counts = [0] * clients
    errors: list[str] = []

    async def one(i: int) -> None:
        try:
            async with Client(http_client(url, token), read_timeout_seconds=300) as client:
                while not stop.exists():
                    result = await client.call_tool("hello", ARGS)
                    if result.is_error:
                        errors.append(str(result))
                        return
                    counts[i] += 1
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors.append(f"client {i}: {type(e).__name__}: {e}")

    async with anyio.create_task_group() as group:
        for i in range(clients):
            group.start_soon(one, i)
    return counts, errors


def main() -> None:
    if sys.argv[1:2] == ["--load"]:
        url, token, clients, stop = sys.argv[2:6]
        print(json.dumps(anyio.run(load, url, token, int(clients), Path(stop))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--skillctl", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()
    py = sys.executable
    results: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(args.binary, args.model_dir, Path(tmp))
        peer_port = free_port()
        peer = subprocess.Popen(
            [py, str(HERE / "mcp_peer_server.py"), "http", str(peer_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(peer_port, peer, "the peer server")
            stdio = StdioServerParameters(
                command=args.skillctl,
                args=["--existing", str(daemon.connection_file), "mcp"],
            )
            peer_stdio = StdioServerParameters(command=py, args=[str(HERE / "mcp_peer_server.py"), "stdio"])
            n, warm = args.calls, 20
            runs = {
                "skillkernel_stdio": (stdio, "hello", ARGS),
                "skillkernel_http": (http_client(daemon.url, daemon.token), "hello", ARGS),
                "peer_stdio": (peer_stdio, "hello", ARGS),
                "peer_http": (http_client(f"http://127.0.0.1:{peer_port}/mcp", None), "hello", ARGS),
            }
            for name, (server, tool, arguments) in runs.items():
                times = anyio.run(round_trips, server, tool, arguments, n, warm)
                results[name] = summary(times, 3)
                print(f"{name}: p50 {results[name]['p50_ms']} ms, p95 {results[name]['p95_ms']} ms", file=sys.stderr)
            for transport in ("stdio", "http"):
                results[f"ratio_{transport}_p50"] = round(
                    results[f"skillkernel_{transport}"]["p50_ms"] / results[f"peer_{transport}"]["p50_ms"], 2
                )

            kc = BlockingKernelClient(connection_file=str(daemon.connection_file))
            kc.load_connection_file()
            kc.start_channels()
            kc.wait_for_ready(timeout=30)
            cell_times(kc, 20)
            idle = cell_times(kc, args.cells)
            # The load runs in a process of its own: in this one, its
            # event loop would hold the GIL the cell client needs.
            stop_file = Path(tmp) / "stop-load"
            loader = subprocess.Popen(
                [py, __file__, "--load", daemon.url, daemon.token, str(args.clients), str(stop_file)],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(3)  # every client connected and calling
            busy = cell_times(kc, args.cells)
            stop_file.touch()
            out, _ = loader.communicate(timeout=120)
            counts, errors = json.loads(out) if out.strip() else ([], ["the load printed nothing"])
            kc.stop_channels()
            results["cells_idle"] = summary(idle, 3) | {"p99_ms": round(pct(idle, 0.99), 3)}
            results["cells_under_load"] = summary(busy, 3) | {"p99_ms": round(pct(busy, 0.99), 3)}
            results["cell_p99_ratio"] = round(pct(busy, 0.99) / pct(idle, 0.99), 2)
            results["load"] = {
                "clients": args.clients,
                "calls_answered": sum(counts),
                "clients_answered": sum(1 for c in counts if c > 0),
                "fewest_calls_per_client": min(counts) if counts else 0,
                "errors": errors[:5],
            }
            print(
                f"cells: idle p99 {results['cells_idle']['p99_ms']} ms, under {args.clients} MCP clients "
                f"p99 {results['cells_under_load']['p99_ms']} ms (x{results['cell_p99_ratio']}); "
                f"{sum(counts)} calls, every client answered: {results['load']['clients_answered'] == args.clients}",
                file=sys.stderr,
            )
        finally:
            peer.terminate()
            daemon.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
