#!/usr/bin/env python3
"""Kernel-core benchmark: skillkernel against ipykernel, same harness, same run.

Measures, for each kernelspec given with --kernel NAME=CELL:

* startup  — wall time from Popen(kernelspec argv) to the first
             kernel_info_reply on the shell socket (repeated, p50 reported);
* rtt      — one trivial cell's round trip: execute_request sent →
             execute_reply received on shell *and* status idle (whose
             parent is that request) received on IOPub;
* pipelined — N execute_requests sent back to back without waiting, then
             every execute_reply and every status idle collected;
             throughput = N / elapsed;
* rss      — VmRSS of the kernel process (/proc/PID/status) after
             startup and the warm-up/measured cells.

Client: one deliberately thin low-level harness used for BOTH kernels. It
uses pyzmq sockets directly and builds/parses the Jupyter wire format itself
(HMAC-SHA256 signing, json). In the timed loops replies are matched on raw
frame bytes (msg_type in the header, the quoted request msg_id in the parent
header, "idle"/"ok" in the content), with no per-message JSON decoding or
HMAC check: the same code for both kernels. jupyter_client is used for
kernelspec lookup and connection-file writing. With --blocking-client N the
rtt is additionally measured through jupyter_client's BlockingKernelClient,
to show how much of a round trip that client itself costs.

Unknown IOPub message types (e.g. `iopub_welcome`) are ignored.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import hmac
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import zmq
from jupyter_client.connect import write_connection_file
from jupyter_client.kernelspec import KernelSpecManager

DELIM = b"<IDS|MSG>"
PROTOCOL_VERSION = "5.4"
now_ns = time.perf_counter_ns


# --------------------------------------------------------------------------
# Minimal wire-protocol client
# --------------------------------------------------------------------------


class WireClient:
    """Shell + IOPub (+ control) sockets speaking the Jupyter wire protocol."""

    def __init__(self, conn: dict, ctx: zmq.Context):
        self.key = conn["key"].encode()
        self.scheme = conn.get("signature_scheme", "hmac-sha256")
        assert self.scheme == "hmac-sha256", self.scheme
        self.session = uuid.uuid4().hex
        self.counter = 0
        ip, transport = conn["ip"], conn.get("transport", "tcp")

        def url(port):
            return f"{transport}://{ip}:{port}"

        self.shell = ctx.socket(zmq.DEALER)
        self.shell.setsockopt(zmq.LINGER, 0)
        self.shell.setsockopt(zmq.RECONNECT_IVL, 1)  # ms; startup polling
        self.shell.setsockopt(zmq.SNDHWM, 0)
        self.shell.setsockopt(zmq.RCVHWM, 0)
        self.shell.setsockopt(zmq.IDENTITY, self.session.encode())
        self.shell.connect(url(conn["shell_port"]))

        self.iopub = ctx.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.LINGER, 0)
        self.iopub.setsockopt(zmq.RECONNECT_IVL, 1)
        self.iopub.setsockopt(zmq.RCVHWM, 0)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(url(conn["iopub_port"]))

        self.control = ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.RECONNECT_IVL, 1)
        self.control.setsockopt(zmq.IDENTITY, self.session.encode())
        self.control.connect(url(conn["control_port"]))

        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)

    def close(self):
        for s in (self.shell, self.iopub, self.control):
            s.close(0)

    # -- sending ------------------------------------------------------------
    def _frames(self, msg_type: str, content: dict) -> tuple[str, list[bytes]]:
        self.counter += 1
        msg_id = f"{self.session}_{self.counter}"
        header = json.dumps(
            {
                "msg_id": msg_id,
                "session": self.session,
                "username": "bench",
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "msg_type": msg_type,
                "version": PROTOCOL_VERSION,
            }
        ).encode()
        parts = [header, b"{}", b"{}", json.dumps(content).encode()]
        mac = hmac.new(self.key, digestmod=hashlib.sha256)
        for p in parts:
            mac.update(p)
        return msg_id, [DELIM, mac.hexdigest().encode(), *parts]

    def send(self, sock, msg_type: str, content: dict) -> str:
        msg_id, frames = self._frames(msg_type, content)
        sock.send_multipart(frames, copy=True)
        return msg_id

    def execute(self, code: str) -> str:
        msg_id, frames = self.execute_frames(code)
        self.shell.send_multipart(frames)
        return msg_id

    def execute_frames(self, code: str) -> tuple[str, list[bytes]]:
        """A signed execute_request, built ahead of the timed region."""
        return self._frames(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )

    # -- receiving ----------------------------------------------------------
    @staticmethod
    def parse(frames: list[bytes], want_content_for=("status",)):
        """Returns (msg_type, parent_msg_id, content-or-None). No HMAC check:
        both kernels are trusted here and verification would only add
        identical client cost to both."""
        i = frames.index(DELIM)
        header = json.loads(frames[i + 2])
        msg_type = header.get("msg_type")
        parent = json.loads(frames[i + 3]) if len(frames[i + 3]) > 2 else {}
        content = None
        if msg_type in want_content_for:
            content = json.loads(frames[i + 5])
        return msg_type, parent.get("msg_id"), content


def is_idle(msg_type, content) -> bool:
    return msg_type == "status" and content is not None and content.get("execution_state") == "idle"


# --------------------------------------------------------------------------
# Kernel process management (no KernelManager: we time Popen ourselves)
# --------------------------------------------------------------------------


@dataclass
class KernelProc:
    name: str
    proc: subprocess.Popen
    conn: dict
    conn_file: str
    t_popen_ns: int

    def pid(self) -> int:
        return self.proc.pid

    def stop(self, client: WireClient | None = None):
        if self.proc.poll() is None and client is not None:
            try:
                client.send(client.control, "shutdown_request", {"restart": False})
                self.proc.wait(timeout=3)
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(self.conn_file)
        except OSError:
            pass


def launch(spec_name: str, ksm: KernelSpecManager, workdir: str, stderr) -> KernelProc:
    spec = ksm.get_kernel_spec(spec_name)
    conn_file = os.path.join(workdir, f"kernel-{spec_name}-{uuid.uuid4().hex[:8]}.json")
    conn_file, conn = write_connection_file(conn_file, ip="127.0.0.1", key=uuid.uuid4().hex.encode())
    conn = dict(conn)
    if isinstance(conn.get("key"), bytes):
        conn["key"] = conn["key"].decode()
    argv = [a.replace("{connection_file}", conn_file) for a in spec.argv]
    env = dict(os.environ)
    env.update(spec.env or {})
    t0 = now_ns()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, cwd=workdir)
    return KernelProc(spec_name, proc, conn, conn_file, t0)


def wait_kernel_info(kp: KernelProc, client: WireClient, timeout_s: float) -> int:
    """Sends kernel_info_request (resending every 50 ms in case the first
    one raced the bind) until a reply arrives; returns ns since Popen."""
    deadline = now_ns() + int(timeout_s * 1e9)
    pending = {client.send(client.shell, "kernel_info_request", {})}
    last_send = now_ns()
    while True:
        if client.shell.poll(2):
            frames = client.shell.recv_multipart()
            t = now_ns()
            msg_type, parent, _ = client.parse(frames)
            if msg_type == "kernel_info_reply" and parent in pending:
                return t - kp.t_popen_ns
        t = now_ns()
        if t > deadline:
            raise TimeoutError(f"{kp.name}: no kernel_info_reply within {timeout_s}s")
        if kp.proc.poll() is not None:
            raise RuntimeError(f"{kp.name}: kernel exited with {kp.proc.returncode} during startup")
        if t - last_send > 50_000_000:
            pending.add(client.send(client.shell, "kernel_info_request", {}))
            last_send = t


def wait_iopub_ready(client: WireClient, timeout_s: float = 10.0):
    """Nudges with kernel_info_request until any IOPub message arrives, so
    the subscription is known to be live before cells are timed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        client.send(client.shell, "kernel_info_request", {})
        end = time.monotonic() + 0.2
        got = False
        while time.monotonic() < end:
            socks = dict(client.poller.poll(20))
            if client.iopub in socks:
                client.iopub.recv_multipart()
                got = True
            if client.shell in socks:
                client.shell.recv_multipart()
            if got:
                break
        if got:
            # drain whatever else is in flight
            time.sleep(0.05)
            drain(client)
            return
    raise TimeoutError("IOPub never delivered a message")


def drain(client: WireClient):
    while True:
        socks = dict(client.poller.poll(0))
        if not socks:
            return
        for s in socks:
            s.recv_multipart()


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


# Timed paths match on bytes instead of decoding JSON: cheaper, and equally
# so for both kernels. A frame's JSON is only decoded when something is off.
#   header frame contains  "execute_reply" / "status"   (the msg_type value)
#   parent frame contains  "<our msg_id>"               (quoted: exact id)
#   content frame contains "idle" / "ok"


def _split(frames):
    i = frames.index(DELIM)
    return frames[i + 2], frames[i + 3], frames[i + 5]


def _check_ok(content: bytes, what: str):
    if b'"ok"' not in content:
        raise RuntimeError(f"{what} failed: {json.loads(content)}")


def round_trip(client: WireClient, code: str, timeout_ms: int = 10_000) -> int:
    msg_id, frames = client.execute_frames(code)
    needle = b'"' + msg_id.encode() + b'"'
    t0 = now_ns()
    client.shell.send_multipart(frames)
    got_reply = got_idle = False
    poll = client.poller.poll
    shell, iopub = client.shell, client.iopub
    while not (got_reply and got_idle):
        socks = poll(timeout_ms)
        if not socks:
            raise TimeoutError(f"no reply/idle for {code!r} (reply={got_reply}, idle={got_idle})")
        for s, _ in socks:
            if s is shell:
                header, parent, content = _split(shell.recv_multipart())
                if b'"execute_reply"' in header and needle in parent:
                    _check_ok(content, f"cell {code!r}")
                    got_reply = True
            elif s is iopub:
                header, parent, content = _split(iopub.recv_multipart())
                if b'"idle"' in content and b'"status"' in header and needle in parent:
                    got_idle = True
    return now_ns() - t0


def count_iopub(client: WireClient, code: str, n: int = 20) -> float:
    """IOPub messages (of any type) whose parent is the cell, per cell."""
    drain(client)
    count = 0
    for _ in range(n):
        msg_id = client.execute(code)
        got_reply = got_idle = False
        while not (got_reply and got_idle):
            socks = dict(client.poller.poll(10_000))
            if not socks:
                raise TimeoutError("count_iopub: no reply/idle")
            if client.shell in socks:
                t, parent, _ = client.parse(client.shell.recv_multipart())
                got_reply |= t == "execute_reply" and parent == msg_id
            if client.iopub in socks:
                t, parent, content = client.parse(client.iopub.recv_multipart())
                if parent == msg_id:
                    count += 1
                    got_idle |= is_idle(t, content)
    return count / n


def pipelined(client: WireClient, code: str, n: int, stall_s: float = 15.0) -> tuple[int, int, int]:
    """Sends n execute_requests back to back. Incoming messages are drained
    between sends (never waited for) so no socket buffer can fill and drop.
    Gives up when nothing arrives for stall_s seconds.
    Returns (elapsed_ns, replies, idles)."""
    replies = idles = 0
    shell, iopub = client.shell, client.iopub
    poll = client.poller.poll
    requests = [client.execute_frames(code) for _ in range(n)]
    # Every request of this run has a msg_id numbered after `first`; only
    # execute_requests are sent meanwhile, so "parent is one of ours" is
    # "parent names this client's session" plus the counter check below.
    ours = b'"' + client.session.encode() + b"_"
    first = int(requests[0][0].rsplit("_", 1)[1])

    def mine(parent: bytes) -> bool:
        i = parent.find(ours)
        if i < 0:
            return False
        j = parent.index(b'"', i + len(ours))
        return int(parent[i + len(ours):j]) >= first

    def handle(socks):
        nonlocal replies, idles
        for s, _ in socks:
            if s is shell:
                header, parent, content = _split(shell.recv_multipart())
                if b'"execute_reply"' in header and mine(parent):
                    _check_ok(content, "pipelined cell")
                    replies += 1
            else:
                header, parent, content = _split(iopub.recv_multipart())
                if b'"idle"' in content and b'"status"' in header and mine(parent):
                    idles += 1

    send = shell.send_multipart
    t0 = now_ns()
    for _, frames in requests:
        send(frames)
        socks = poll(0)
        if socks:
            handle(socks)
    last = now_ns()
    while replies < n or idles < n:
        socks = poll(1000)
        if socks:
            handle(socks)
            last = now_ns()
        elif now_ns() - last > stall_s * 1e9:
            break
    return now_ns() - t0, replies, idles


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS of pid, VmRSS summed over pid and its descendants) in KiB."""

    def one(p):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def children(p):
        out = []
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    out += [int(c) for c in f.read().split()]
        except OSError:
            pass
        return out

    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += one(p)
        stack += children(p)
    return one(pid), total


def cpu_ns(pid: int) -> int:
    """CPU time (user+system, ns) consumed so far by all live threads of pid,
    from /proc/PID/task/*/schedstat."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


class CpuMeter:
    """Kernel-process and client-process CPU over a phase."""

    def __init__(self, pid: int):
        self.pid = pid

    def __enter__(self):
        self.k0, self.c0, self.w0 = cpu_ns(self.pid), time.process_time_ns(), now_ns()
        return self

    def __exit__(self, *exc):
        self.kernel_ns = cpu_ns(self.pid) - self.k0
        self.client_ns = time.process_time_ns() - self.c0
        self.wall_ns = now_ns() - self.w0


def blocking_client_rtt(kp: KernelProc, code: str, warmup: int, n: int) -> list[int]:
    """Round trips through jupyter_client's BlockingKernelClient."""
    from jupyter_client.blocking import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=kp.conn_file)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)

        def once():
            t0 = now_ns()
            msg_id = kc.execute(code)
            reply = kc.get_shell_msg(timeout=10)
            while reply["parent_header"].get("msg_id") != msg_id:
                reply = kc.get_shell_msg(timeout=10)
            while True:
                m = kc.get_iopub_msg(timeout=10)
                if (
                    m["parent_header"].get("msg_id") == msg_id
                    and m["msg_type"] == "status"
                    and m["content"].get("execution_state") == "idle"
                ):
                    break
            return now_ns() - t0

        for _ in range(warmup):
            once()
        return [once() for _ in range(n)]
    finally:
        kc.stop_channels()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Result:
    name: str
    code: str
    startup_ms: list[float] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    pipe_n: int = 0
    pipe_s: float = 0.0
    pipe_replies: int = 0
    pipe_idles: int = 0
    rss_kib: int = 0
    rss_tree_kib: int = 0
    rss_after_start_kib: int = 0
    blocking_rtt_ms: list[float] = field(default_factory=list)
    # CPU per execute (µs) in the rtt and pipelined phases
    rtt_kernel_cpu_us: float = 0.0
    rtt_client_cpu_us: float = 0.0
    pipe_kernel_cpu_us: float = 0.0
    pipe_client_cpu_us: float = 0.0
    iopub_per_cell: float = 0.0
    pipe_stalled: bool = False
    rss_end_kib: int = 0
    cells_total: int = 0

    def summary(self) -> dict:
        d = {
            "kernel": self.name,
            "cell": self.code,
            "startup_ms_p50": statistics.median(self.startup_ms),
            "startup_ms_min": min(self.startup_ms),
            "startup_ms_max": max(self.startup_ms),
            "startup_runs": len(self.startup_ms),
            "rtt_ms_p50": pct(self.rtt_ms, 0.5),
            "rtt_ms_p90": pct(self.rtt_ms, 0.9),
            "rtt_ms_p99": pct(self.rtt_ms, 0.99),
            "rtt_ms_mean": statistics.fmean(self.rtt_ms),
            "rtt_n": len(self.rtt_ms),
            "pipelined_n": self.pipe_n,
            "pipelined_s": self.pipe_s,
            "pipelined_per_s": self.pipe_n / self.pipe_s if self.pipe_s else float("nan"),
            "pipelined_replies": self.pipe_replies,
            "pipelined_idles": self.pipe_idles,
            "pipelined_stalled": self.pipe_stalled,
            "rss_after_start_mib": self.rss_after_start_kib / 1024,
            "rss_mib": self.rss_kib / 1024,
            "rss_tree_mib": self.rss_tree_kib / 1024,
            "rss_end_mib": self.rss_end_kib / 1024,
            "cells_total": self.cells_total,
            "rtt_kernel_cpu_us_per_cell": self.rtt_kernel_cpu_us,
            "rtt_client_cpu_us_per_cell": self.rtt_client_cpu_us,
            "pipelined_kernel_cpu_us_per_cell": self.pipe_kernel_cpu_us,
            "pipelined_client_cpu_us_per_cell": self.pipe_client_cpu_us,
            "iopub_msgs_per_cell": self.iopub_per_cell,
        }
        if self.blocking_rtt_ms:
            d["blocking_client_rtt_ms_p50"] = pct(self.blocking_rtt_ms, 0.5)
            d["blocking_client_rtt_n"] = len(self.blocking_rtt_ms)
        return d


def bench_kernel(name: str, code: str, args, ksm, workdir, ctx, log) -> Result:
    r = Result(name, code)
    primary = name == args.primary
    starts = args.startup_runs_skill if primary else args.startup_runs_baseline
    n_pipe = args.pipelined if primary else args.pipelined_baseline

    # -- startup: fresh process each time ------------------------------------
    for i in range(starts):
        kp = launch(name, ksm, workdir, log)
        client = WireClient(kp.conn, ctx)
        try:
            r.startup_ms.append(wait_kernel_info(kp, client, args.startup_timeout) / 1e6)
        finally:
            kp.stop(client)
            client.close()
        print(f"  [{name}] startup run {i + 1}/{starts}: {r.startup_ms[-1]:.1f} ms", file=sys.stderr)

    # -- one long-lived kernel for the rest ------------------------------------
    kp = launch(name, ksm, workdir, log)
    client = WireClient(kp.conn, ctx)
    try:
        wait_kernel_info(kp, client, args.startup_timeout)
        wait_iopub_ready(client)
        time.sleep(0.2)
        r.rss_after_start_kib = rss_kib(kp.pid())[0]

        for _ in range(args.warmup):
            round_trip(client, code)
        r.iopub_per_cell = count_iopub(client, code)
        # idle RSS: after startup and a few (warm-up) cells, once settled
        time.sleep(0.5)
        r.rss_kib, r.rss_tree_kib = rss_kib(kp.pid())
        with CpuMeter(kp.pid()) as cpu:
            r.rtt_ms = [round_trip(client, code) / 1e6 for _ in range(args.rtt)]
        r.rtt_kernel_cpu_us = cpu.kernel_ns / args.rtt / 1e3
        r.rtt_client_cpu_us = cpu.client_ns / args.rtt / 1e3
        print(f"  [{name}] rtt p50 {pct(r.rtt_ms, 0.5):.3f} ms over {args.rtt}", file=sys.stderr)

        drain(client)
        with CpuMeter(kp.pid()) as cpu:
            el, rep, idl = pipelined(client, code, n_pipe, args.stall_timeout)
        r.pipe_kernel_cpu_us = cpu.kernel_ns / n_pipe / 1e3
        r.pipe_client_cpu_us = cpu.client_ns / n_pipe / 1e3
        r.pipe_n, r.pipe_s, r.pipe_replies, r.pipe_idles = n_pipe, el / 1e9, rep, idl
        stalled = rep < n_pipe or idl < n_pipe
        if stalled:
            # Rate over what did arrive, before the stall window.
            r.pipe_s = max(el / 1e9 - args.stall_timeout, 1e-9)
            r.pipe_n = rep
            r.pipe_stalled = True
        print(f"  [{name}] pipelined {n_pipe} in {el / 1e9:.3f} s "
              f"(replies {rep}, idles {idl}){' STALLED' if stalled else ''}", file=sys.stderr)
        drain(client)

        if args.blocking_client and not stalled:
            r.blocking_rtt_ms = [
                x / 1e6 for x in blocking_client_rtt(kp, code, min(args.warmup, 100), args.blocking_client)
            ]
            print(f"  [{name}] BlockingKernelClient rtt p50 {pct(r.blocking_rtt_ms, 0.5):.3f} ms", file=sys.stderr)

        # RSS again after everything (thousands of cells, a deep pipeline)
        time.sleep(0.5)
        r.rss_end_kib = rss_kib(kp.pid())[0]
        r.cells_total = args.warmup + 20 + args.rtt + n_pipe + (
            (min(args.warmup, 100) + args.blocking_client) if r.blocking_rtt_ms else 0)
    finally:
        kp.stop(client)
        client.close()
    return r


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt_ratio(x: float) -> str:
    return f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def report(results: list[dict], m: dict, args) -> str:
    sk = results[0]
    base = results[1] if len(results) > 1 else None
    rows = []

    def row(label, key, unit, fmt, target, better_low=True, check=None):
        a = sk[key]
        cells = [label, f"{fmt.format(a)} {unit}"]
        if base:
            b = base[key]
            ratio = (b / a) if better_low else (a / b)
            cells += [f"{fmt.format(b)} {unit}", fmt_ratio(ratio)]
        ok = check(a, base[key] if base else None) if check else None
        cells += [target, "" if ok is None else ("met" if ok else "**MISSED**")]
        rows.append(cells)

    row("Trivial cell round trip, p50", "rtt_ms_p50", "ms", "{:.3f}",
        "≤ 0.5 ms and ≥ 5× faster",
        check=lambda a, b: a <= 0.5 and (b is None or b / a >= 5))
    row("Trivial cell round trip, p90", "rtt_ms_p90", "ms", "{:.3f}", "")
    row("Trivial cell round trip, p99", "rtt_ms_p99", "ms", "{:.3f}", "")
    row("Pipelined executes", "pipelined_per_s", "/s", "{:,.0f}", "≥ 10,000 /s",
        better_low=False, check=lambda a, b: a >= 10_000)
    row("Start → first kernel_info_reply, p50", "startup_ms_p50", "ms", "{:.1f}", "≤ 100 ms",
        check=lambda a, b: a <= 100)
    row(f"Idle RSS (VmRSS) after start + {args.warmup + 20} cells", "rss_mib", "MiB", "{:.1f}",
        "≤ 20 MiB", check=lambda a, b: a <= 20)
    row("RSS at end of run (all cells, incl. pipelined burst)", "rss_end_mib", "MiB", "{:.1f}", "")
    if "blocking_client_rtt_ms_p50" in sk and (not base or "blocking_client_rtt_ms_p50" in base):
        row("Round trip p50 via BlockingKernelClient (reference)", "blocking_client_rtt_ms_p50",
            "ms", "{:.3f}", "")

    hdr = ["Metric", f"{sk['kernel']} (`{sk['cell']}`)"]
    if base:
        hdr += [f"{base['kernel']} (`{base['cell']}`)", f"{sk['kernel']} advantage"]
    hdr += ["Target", "Status"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * len(hdr)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]

    counts = (f"warm-up {args.warmup} cells, {args.rtt} timed round trips, "
              f"{args.pipelined} pipelined executes ({args.pipelined_baseline} for the baseline), startup runs "
              f"{args.startup_runs_skill} (skillkernel) / {args.startup_runs_baseline} (baseline)")
    extra = []
    for r in results:
        extra.append(
            f"- {r['kernel']}: startup min/max {r['startup_ms_min']:.1f}/{r['startup_ms_max']:.1f} ms; "
            f"rtt mean {r['rtt_ms_mean']:.3f} ms; pipelined {r['pipelined_n']} in {r['pipelined_s']:.3f} s "
            f"(replies {r['pipelined_replies']}, idles {r['pipelined_idles']})"
            f"{' **STALLED**' if r['pipelined_stalled'] else ''}; "
            f"RSS just after start {r['rss_after_start_mib']:.1f} MiB, "
            f"idle process tree {r['rss_tree_mib']:.1f} MiB, "
            f"after all {r['cells_total']} cells {r['rss_end_mib']:.1f} MiB; "
            f"IOPub messages per cell {r['iopub_msgs_per_cell']:.1f}; "
            f"CPU per cell kernel/client: round trip {r['rtt_kernel_cpu_us_per_cell']:.0f}/"
            f"{r['rtt_client_cpu_us_per_cell']:.0f} µs, pipelined {r['pipelined_kernel_cpu_us_per_cell']:.0f}/"
            f"{r['pipelined_client_cpu_us_per_cell']:.0f} µs"
        )
    mach = (f"Machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}; "
            f"Python {m['python']}, pyzmq {m['pyzmq']} (libzmq {m['libzmq']}); {m['date']}")
    return "\n".join([mach, "", counts, "", *lines, "", *extra]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", action="append", metavar="SPEC=CELL",
                    help="kernelspec name and trivial cell; first is the subject, second the baseline "
                         "(default: skillkernel='%%set x = 1' and python3='pass')")
    ap.add_argument("--warmup", type=int, default=200, help="untimed cells before timing (default 200)")
    ap.add_argument("--rtt", type=int, default=2000, help="timed round trips (default 2000)")
    ap.add_argument("--pipelined", type=int, default=5000,
                    help="pipelined executes, subject kernel (default 5000)")
    ap.add_argument("--pipelined-baseline", type=int, default=1000,
                    help="pipelined executes, baseline kernel (default 1000: ipykernel 7 slows down "
                         "super-linearly with queue depth and all but stalls at 5000)")
    ap.add_argument("--startup-runs", type=int, default=None, help="set both startup run counts")
    ap.add_argument("--startup-runs-skill", type=int, default=20, help="startups of the subject (default 20)")
    ap.add_argument("--startup-runs-baseline", type=int, default=5, help="startups of the baseline (default 5)")
    ap.add_argument("--startup-timeout", type=float, default=60.0)
    ap.add_argument("--stall-timeout", type=float, default=15.0,
                    help="give up pipelining after this many seconds without a message")
    ap.add_argument("--blocking-client", type=int, default=500, metavar="N",
                    help="also time N round trips via BlockingKernelClient (0 = skip; default 500)")
    ap.add_argument("--json", metavar="FILE", help="write raw summary JSON here")
    ap.add_argument("--markdown", metavar="FILE", help="write the markdown report here")
    ap.add_argument("--kernel-log", metavar="FILE", help="kernel stdout/stderr (default: discarded)")
    args = ap.parse_args()
    if args.startup_runs is not None:
        args.startup_runs_skill = args.startup_runs_baseline = args.startup_runs

    kernels = []
    for k in args.kernel or ["skillkernel=%set x = 1", "python3=pass"]:
        name, _, code = k.partition("=")
        kernels.append((name, code))
    args.primary = kernels[0][0]

    ksm = KernelSpecManager()
    available = ksm.find_kernel_specs()
    for name, _ in kernels:
        if name not in available:
            print(f"kernelspec {name!r} not found (have: {sorted(available)}); "
                  f"set JUPYTER_PATH or run scripts/bench-kernel", file=sys.stderr)
            return 2

    m = machine()
    print(f"machine: {json.dumps(m)}", file=sys.stderr)
    workdir = tempfile.mkdtemp(prefix="kernel-bench-")
    log = open(args.kernel_log, "ab") if args.kernel_log else subprocess.DEVNULL
    ctx = zmq.Context()
    # keep Ctrl-C from leaving kernels behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    try:
        for name, code in kernels:
            print(f"== {name}: cell {code!r}", file=sys.stderr)
            results.append(bench_kernel(name, code, args, ksm, workdir, ctx, log).summary())
    finally:
        ctx.destroy(0)
        shutil.rmtree(workdir, ignore_errors=True)

    text = report(results, m, args)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": m, "results": results, "args": {
                k: v for k, v in vars(args).items() if k not in ("kernel",)}}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
