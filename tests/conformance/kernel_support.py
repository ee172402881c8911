"""What the conformance tests share: finding the binary, a private Jupyter
prefix with the installed kernelspec, and waiting for one shell reply.

Imported by the test modules beside it (pytest puts this folder on
`sys.path`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

KERNEL_NAME = "skillkernel"
REPO = Path(__file__).resolve().parents[2]
# How long a client may wait for anything the kernel should do promptly.
REPLY_TIMEOUT = 30


def skillkernel_binary() -> Path:
    """$SKILLKERNEL_BIN, else <repo>/target/debug/skillkernel; fails the test if missing."""
    configured = os.environ.get("SKILLKERNEL_BIN")
    path = Path(configured) if configured else REPO / "target" / "debug" / "skillkernel"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"skillkernel binary not found at {path}: build it with "
            "`cargo build --workspace --bins` or point SKILLKERNEL_BIN at it",
            pytrace=False,
        )
    return path


@contextlib.contextmanager
def private_jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Installs the kernelspec into a fresh prefix and points Jupyter (and
    the kernel's state dir) at temporary folders while the block runs."""
    binary = skillkernel_binary()
    prefix = tmp_path_factory.mktemp("prefix")
    runtime = tmp_path_factory.mktemp("runtime")
    # Kernels persist their sessions in the state dir: keep them out of ~.
    state = tmp_path_factory.mktemp("state")
    installed = subprocess.run(
        [str(binary), "install", "--prefix", str(prefix)],
        capture_output=True, text=True, timeout=60,
    )
    assert installed.returncode == 0, (
        f"`skillkernel install --prefix` failed ({installed.returncode}):\n"
        f"{installed.stdout}\n{installed.stderr}"
    )
    spec = prefix / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"
    assert spec.is_file(), f"install did not write {spec}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        mp.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
        mp.setenv("SKILLKERNEL_STATE_DIR", str(state))
        yield {"prefix": prefix, "runtime": runtime, "binary": binary}


def shell_reply(kc, msg_id: str, timeout: float = REPLY_TIMEOUT):
    """The shell reply to `msg_id`, skipping replies to anything else;
    `queue.Empty` once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise queue.Empty
        msg = kc.get_shell_msg(timeout=remaining)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
