"""jupyter_client's own KernelManager starting skillkernel through a kernel
provisioner of `gateway_provisioners` (no gateway): the kernelspec names
the provisioner, which launches the kernel over SSH and waits for its
connection information on a response address, as EG does. Runs a cell,
interrupts a running one, restarts, shuts down; prints a JSON report.

Usage: drive_provisioner.py KERNEL_NAME   (JUPYTER_PATH finds the kernelspec)
"""

from __future__ import annotations

import json
import sys
import time

from jupyter_client.manager import KernelManager

TIMEOUT = 60


def run(kc, code: str, timeout: float = TIMEOUT) -> dict:
    """Executes `code`; returns the reply's status and what it printed."""
    msg_id = kc.execute(code)
    text, deadline = [], time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            text.append(msg["content"]["text"])
        elif kind == "error":
            text.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    assert reply["parent_header"]["msg_id"] == msg_id
    return {"status": reply["content"]["status"],
            "ename": reply["content"].get("ename"), "text": "".join(text)}


def main() -> int:
    kernel_name = sys.argv[1]
    report: dict = {}
    km = KernelManager(kernel_name=kernel_name)
    report["provisioner"] = type(km.provisioner).__name__ if km.provisioner else None
    km.start_kernel()
    report["provisioner"] = type(km.provisioner).__name__
    report["kernel_id"] = km.kernel_id
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    report["echo"] = run(kc, "!echo through a provisioner")

    msg_id = kc.execute("!sleep 30")
    deadline = time.monotonic() + TIMEOUT
    while True:  # the cell has started once its execute_input is out
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if (msg["msg_type"] == "execute_input"
                and msg["parent_header"].get("msg_id") == msg_id):
            break
    time.sleep(0.5)
    began = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=25)
    assert reply["parent_header"]["msg_id"] == msg_id
    report["interrupt"] = {"ename": reply["content"].get("ename"),
                           "secs": time.monotonic() - began}
    kc.stop_channels()

    km.restart_kernel(now=False)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    report["after_restart"] = run(kc, "!echo after restart")
    kc.stop_channels()

    km.shutdown_kernel(now=False)
    report["alive_after_shutdown"] = km.is_alive()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
