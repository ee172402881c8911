#!/usr/bin/env python3
"""Kernel ready through Jupyter Enterprise Gateway (issue 19, see
docs/performance.md): the time from a client's `POST /api/kernels` to the
kernel's first `kernel_info_reply` over the gateway's websocket, for
skillkernel and for ipykernel under EG's own Python launcher
(`launch_ipykernel.py`), both through the same distributed process proxy
over SSH to this machine, interleaved in one run.
Target: skillkernel ≤ 0.5× ipykernel.

Usage: gateway_bench.py --bin target/release/skillkernel --launcher DIR
       [--rounds N] [--out results.json]
  --launcher  gateway_provisioners' kernel-launchers folder: its
              python/scripts/launch_ipykernel.py and shared/scripts/server_listener.py
              are put together as its own assembly step does
Run with the EG venv's python (requests, websocket-client, ipykernel).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import websocket

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import machine, summary  # noqa: E402

REMOTE_HOST = "127.0.0.2"
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} never listened on {host}:{port}")
            time.sleep(0.05)


def start_sshd(root: Path) -> tuple[subprocess.Popen, int, Path]:
    """An OpenSSH server on 127.0.0.2 and a HOME whose keys reach it."""
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    for key in (home / ".ssh" / "id_ed25519", root / "host_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (root / "authorized_keys").write_text((home / ".ssh" / "id_ed25519.pub").read_text())
    port = free_port()
    host_key = " ".join((root / "host_key.pub").read_text().split()[:2])
    (home / ".ssh" / "known_hosts").write_text(f"[{REMOTE_HOST}]:{port} {host_key}\n")
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress {REMOTE_HOST}\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nStrictModes no\n"
        f"PidFile {root / 'sshd.pid'}\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=open(root / "sshd.log", "w"))
    wait_port(REMOTE_HOST, port, "sshd")
    return proc, port, home


def assemble_launcher(root: Path, launchers: Path) -> Path:
    """EG's Python launcher with its shared listener beside it (the
    package keeps a placeholder there until assembled)."""
    scripts = root / "launcher"
    scripts.mkdir()
    shutil.copy(launchers / "python" / "scripts" / "launch_ipykernel.py", scripts)
    shutil.copy(launchers / "shared" / "scripts" / "server_listener.py", scripts)
    return scripts


def write_kernelspecs(root: Path, binary: str, launcher: Path, model_dir: str) -> Path:
    kernels = root / "share" / "jupyter" / "kernels"
    spec = json.loads((REPO / "packaging/gateway/kernelspecs/skillkernel_distributed/kernel.json")
                      .read_text())
    spec["argv"][0] = binary
    spec["env"] = {"SKILLKERNEL_STATE_DIR": str(root / "state"),
                   "SKILLKERNEL_MODEL_DIR": model_dir,
                   "JUPYTER_RUNTIME_DIR": str(root / "kernel-runtime")}
    (kernels / "skillkernel").mkdir(parents=True)
    (kernels / "skillkernel" / "kernel.json").write_text(json.dumps(spec))
    peer = {
        "display_name": "Python (EG's launcher, distributed)",
        "language": "python",
        "metadata": {"process_proxy": {"class_name": spec["metadata"]["process_proxy"]["class_name"]}},
        "env": {"JUPYTER_RUNTIME_DIR": str(root / "kernel-runtime")},
        "argv": [sys.executable, str(launcher / "launch_ipykernel.py"),
                 "--kernel-id", "{kernel_id}", "--response-address", "{response_address}",
                 "--public-key", "{public_key}", "--port-range", "{port_range}",
                 "--spark-context-initialization-mode", "none"],
    }
    (kernels / "ipykernel").mkdir()
    (kernels / "ipykernel" / "kernel.json").write_text(json.dumps(peer))
    return kernels.parent


def start_gateway(root: Path, jupyter_path: Path, ssh_port: int, home: Path,
                  poll_interval: str | None):
    port = free_port()
    env = dict(os.environ, HOME=str(home), JUPYTER_PATH=str(jupyter_path),
               JUPYTER_DATA_DIR=str(root / "data"), JUPYTER_RUNTIME_DIR=str(root / "runtime"),
               EG_SSH_PORT=str(ssh_port), EG_KERNEL_LOG_DIR=str(root),
               EG_RESPONSE_IP="127.0.0.1", EG_RESPONSE_PORT=str(free_port()),
               EG_KERNEL_LAUNCH_TIMEOUT="60")
    if poll_interval:
        # How long EG sleeps between looks at its response socket (default
        # 0.5 s): every launch is rounded up to a multiple of it.
        env["EG_POLL_INTERVAL"] = poll_interval
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-enterprisegateway"), "--ip=127.0.0.1",
         f"--port={port}", f"--EnterpriseGatewayApp.remote_hosts={REMOTE_HOST}",
         "--EnterpriseGatewayApp.port_range=42000..43500"],
        env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=open(root / "gateway.log", "w"))
    wait_port("127.0.0.1", port, "Enterprise Gateway")
    return proc, f"http://127.0.0.1:{port}"


def ssh_exec_secs(ssh_port: int, home: Path) -> float:
    """What every launch through the proxy pays before any kernel runs:
    EG's own SSH call (paramiko: connect, authenticate, run a command in
    the remote user's login shell, read its output)."""
    import paramiko
    os.environ["HOME"] = str(home)  # paramiko's known_hosts and key, as EG's
    began = time.perf_counter()
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(REMOTE_HOST, port=ssh_port, username=os.environ.get("USER", "root"))
    _, stdout, _ = client.exec_command("nohup true >/dev/null 2>&1 & echo $!", timeout=30)
    stdout.readlines()
    client.close()
    return time.perf_counter() - began


def ready_secs(base: str, name: str) -> float:
    """POST /api/kernels → first kernel_info_reply over the websocket; the
    kernel is shut down afterwards (not timed)."""
    began = time.perf_counter()
    started = requests.post(f"{base}/api/kernels", json={
        "name": name, "env": {"KERNEL_USERNAME": "bench"}}, timeout=120)
    assert started.status_code == 201, started.text
    kernel_id = started.json()["id"]
    ws = websocket.create_connection(
        base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels", timeout=60)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "channel": "shell",
        "header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "bench",
                   "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "content": {}, "buffers": []}))
    while True:
        msg = json.loads(ws.recv())
        if (msg["header"]["msg_type"] == "kernel_info_reply"
                and msg["parent_header"].get("msg_id") == msg_id):
            break
    elapsed = time.perf_counter() - began
    ws.close()
    requests.delete(f"{base}/api/kernels/{kernel_id}", timeout=120)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--launcher", required=True, type=Path)
    ap.add_argument("--model-dir", default=os.environ.get("SKILLKERNEL_MODEL_DIR", ""))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sshd, ssh_port, home = start_sshd(root)
        launcher = assemble_launcher(root, args.launcher)
        jupyter_path = write_kernelspecs(root, os.path.abspath(args.bin), launcher,
                                         args.model_dir)
        result = {"machine": machine(),
                  "proxy": "DistributedProcessProxy over SSH to 127.0.0.2"}
        try:
            # EG as installed, then polling its response socket every 50 ms.
            for label, poll in (("eg_default_poll_0.5s", None), ("eg_poll_0.05s", "0.05")):
                gateway, base = start_gateway(root, jupyter_path, ssh_port, home, poll)
                try:
                    # One untimed launch each: SSH keys, page cache, imports.
                    ready_secs(base, "skillkernel")
                    ready_secs(base, "ipykernel")
                    times: dict[str, list[float]] = {"skillkernel": [], "ipykernel": [],
                                                     "ssh_exec": []}
                    for _ in range(args.rounds):
                        for name in ("skillkernel", "ipykernel"):
                            times[name].append(ready_secs(base, name) * 1000)
                        times["ssh_exec"].append(ssh_exec_secs(ssh_port, home) * 1000)
                finally:
                    gateway.terminate()
                    gateway.wait(timeout=30)
                part = {name: summary(values, 1) for name, values in times.items()}
                part["ratio_p50"] = round(
                    part["skillkernel"]["p50_ms"] / part["ipykernel"]["p50_ms"], 3)
                # The same ratio without the proxy's SSH call, which both pay.
                ssh = part["ssh_exec"]["p50_ms"]
                part["ratio_p50_without_ssh"] = round(
                    (part["skillkernel"]["p50_ms"] - ssh) / (part["ipykernel"]["p50_ms"] - ssh), 3)
                result[label] = part
        finally:
            sshd.terminate()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
