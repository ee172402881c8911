"""A client of Jupyter Enterprise Gateway's REST and websocket API, as a
notebook front end uses it: start a kernel, run cells, interrupt, restart,
shut down. tests/enterprise_gateway.rs runs it against a real gateway and
checks the JSON report it prints on stdout (one object); any step that
fails raises, and the exit status is non-zero.

Usage: drive_gateway.py GATEWAY_URL KERNEL_NAME
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import requests
import websocket

REPLY_TIMEOUT = 60


class Channels:
    """The kernel's channels over the gateway's websocket."""

    def __init__(self, base: str, kernel_id: str):
        url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
        self.ws = websocket.create_connection(url, timeout=REPLY_TIMEOUT)
        self.session = uuid.uuid4().hex

    def close(self):
        self.ws.close()

    def send(self, channel: str, msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "channel": channel,
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "tester",
                       "session": self.session, "version": "5.3",
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "parent_header": {}, "metadata": {}, "content": content, "buffers": [],
        }))
        return msg_id

    def collect(self, msg_id: str, reply_type: str, timeout: float = REPLY_TIMEOUT):
        """The reply to `msg_id` and the IOPub output it caused, once the
        kernel went idle after it."""
        deadline = time.monotonic() + timeout
        reply, outputs, idle = None, [], False
        while not (reply and idle):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {reply_type} (and idle) within {timeout}s; got {outputs}")
            self.ws.settimeout(left)
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == reply_type:
                reply = msg["content"]
            elif kind == "status":
                idle = msg["content"]["execution_state"] == "idle"
            elif kind in ("stream", "execute_result", "display_data",
                          "update_display_data", "error"):
                outputs.append({"type": kind, **msg["content"]})
        return reply, outputs

    def wait_for(self, msg_id: str, msg_type: str, timeout: float = REPLY_TIMEOUT) -> dict:
        """The first message of `msg_type` caused by `msg_id` (others seen
        meanwhile are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {msg_type} for {msg_id} within {timeout}s")
            self.ws.settimeout(left)
            msg = json.loads(self.ws.recv())
            if (msg["header"]["msg_type"] == msg_type
                    and msg.get("parent_header", {}).get("msg_id") == msg_id):
                return msg

    def execute(self, code: str, timeout: float = REPLY_TIMEOUT):
        msg_id = self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        return self.collect(msg_id, "execute_reply", timeout)


def text_of(outputs: list) -> str:
    """The text a notebook would show: a display updated in place (a
    streamed answer) counts once, with its last content."""
    parts: list = []
    displays: dict = {}
    for o in outputs:
        if o["type"] == "stream":
            parts.append(o["text"])
        elif o["type"] in ("execute_result", "display_data", "update_display_data"):
            text = o["data"].get("text/plain", "")
            display_id = o.get("transient", {}).get("display_id")
            if display_id is None:
                parts.append(text)
            elif display_id in displays:
                parts[displays[display_id]] = text
            else:
                displays[display_id] = len(parts)
                parts.append(text)
        elif o["type"] == "error":
            parts.append(f"{o['ename']}: {o['evalue']}")
    return "".join(parts)


def kernel_info(channels: Channels) -> dict:
    msg_id = channels.send("shell", "kernel_info_request", {})
    reply, _ = channels.collect(msg_id, "kernel_info_reply")
    return reply


def main() -> int:
    base, kernel_name = sys.argv[1].rstrip("/"), sys.argv[2]
    report: dict = {}
    began = time.monotonic()
    started = requests.post(f"{base}/api/kernels", json={
        "name": kernel_name, "env": {"KERNEL_USERNAME": "tester"}}, timeout=REPLY_TIMEOUT)
    assert started.status_code == 201, f"start: {started.status_code} {started.text}"
    kernel_id = started.json()["id"]
    report["kernel_id"] = kernel_id
    channels = Channels(base, kernel_id)
    info = kernel_info(channels)
    report["ready_secs"] = time.monotonic() - began
    report["implementation"] = info["implementation"]

    reply, outputs = channels.execute("!echo cell through the gateway")
    report["echo"] = {"status": reply["status"], "text": text_of(outputs)}

    reply, outputs = channels.execute("Say hello in one short sentence.")
    report["prompt"] = {"status": reply["status"], "text": text_of(outputs)}

    # Interrupt: the gateway signals the kernel over its communication port.
    msg_id = channels.send("shell", "execute_request", {
        "code": "!sleep 30", "silent": False, "store_history": True,
        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    channels.wait_for(msg_id, "execute_input")
    time.sleep(0.5)  # the command starts right after its execute_input
    interrupted_at = time.monotonic()
    response = requests.post(f"{base}/api/kernels/{kernel_id}/interrupt", timeout=REPLY_TIMEOUT)
    assert response.status_code == 204, f"interrupt: {response.status_code} {response.text}"
    reply, outputs = channels.collect(msg_id, "execute_reply", timeout=25)
    report["interrupt"] = {"status": reply["status"], "ename": reply.get("ename"),
                           "text": text_of(outputs),
                           "secs": time.monotonic() - interrupted_at}

    reply, outputs = channels.execute("!echo still serving")
    report["after_interrupt"] = {"status": reply["status"], "text": text_of(outputs)}
    channels.close()

    # Restart: the gateway shuts the kernel down and launches it again.
    response = requests.post(f"{base}/api/kernels/{kernel_id}/restart", json={},
                             timeout=REPLY_TIMEOUT)
    assert response.status_code == 200, f"restart: {response.status_code} {response.text}"
    channels = Channels(base, kernel_id)
    kernel_info(channels)
    reply, outputs = channels.execute("!echo after restart")
    report["after_restart"] = {"status": reply["status"], "text": text_of(outputs)}
    channels.close()

    response = requests.delete(f"{base}/api/kernels/{kernel_id}", timeout=REPLY_TIMEOUT)
    report["shutdown_status"] = response.status_code
    gone = requests.get(f"{base}/api/kernels/{kernel_id}", timeout=REPLY_TIMEOUT)
    report["lookup_after_shutdown"] = gone.status_code
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
