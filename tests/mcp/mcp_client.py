"""Drives skillkernel's MCP server with the official MCP Python SDK.

Usage: mcp_client.py TRANSPORT_JSON < OPS_JSON

TRANSPORT_JSON is {"http": URL, "token": TOKEN} (Streamable HTTP with a
bearer token) or {"stdio": [COMMAND, ARG, ...]} (a stdio server the SDK
launches, such as `skillctl --existing FILE mcp`). OPS_JSON is a list of
operations run in order on one connection; the results are printed as
one JSON object: {"protocol": VERSION, "results": [...]}, or
{"error": TEXT} when the connection itself failed.

Operations ("op" and its fields):
  list_tools | list_prompts | list_resources
  get_prompt name arguments       read_resource uri
  call name arguments [progress]  -> the result, and the progress seen
  cancel name arguments after     -> the call abandoned after `after`
                                     seconds (the SDK sends
                                     notifications/cancelled); its time
  time name arguments n           -> n calls one after another: each
                                     round trip in ms (the benchmark)
  concurrent name arguments n     -> n calls at once: each round trip
  sleep seconds
  wait_notice method timeout      -> whether the server sent a
                                     notification `method` (say
                                     notifications/tools/list_changed)
                                     within `timeout` seconds
"""

import json
import sys
import time

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


NOTICES = []


async def on_message(message):
    method = getattr(message, "method", None)
    if method:
        NOTICES.append(method)


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run(client, op):
    kind = op["op"]
    if kind == "list_tools":
        return dump(await client.list_tools())["tools"]
    if kind == "list_prompts":
        return dump(await client.list_prompts())["prompts"]
    if kind == "list_resources":
        return dump(await client.list_resources())["resources"]
    if kind == "get_prompt":
        return dump(await client.get_prompt(op["name"], op.get("arguments") or {}))
    if kind == "read_resource":
        return dump(await client.read_resource(op["uri"]))
    if kind == "call":
        seen = []

        async def on_progress(progress, total, message):
            seen.append({"progress": progress, "message": message})

        callback = on_progress if op.get("progress") else None
        started = time.perf_counter()
        result = await client.call_tool(op["name"], op.get("arguments") or {}, progress_callback=callback)
        return {
            "result": dump(result),
            "progress": seen,
            "ms": (time.perf_counter() - started) * 1e3,
        }
    if kind == "cancel":
        started = time.perf_counter()
        finished = False
        with anyio.move_on_after(op["after"]):
            await client.call_tool(op["name"], op.get("arguments") or {})
            finished = True
        return {"finished": finished, "ms": (time.perf_counter() - started) * 1e3}
    if kind == "time":
        times = []
        for _ in range(op["n"]):
            started = time.perf_counter()
            result = await client.call_tool(op["name"], op.get("arguments") or {})
            times.append((time.perf_counter() - started) * 1e3)
            if result.is_error:
                return {"error": dump(result)}
        return times
    if kind == "concurrent":
        times = []
        errors = []

        async def one():
            started = time.perf_counter()
            result = await client.call_tool(op["name"], op.get("arguments") or {})
            times.append((time.perf_counter() - started) * 1e3)
            if result.is_error:
                errors.append(dump(result))

        async with anyio.create_task_group() as group:
            for _ in range(op["n"]):
                group.start_soon(one)
        return {"ms": times, "errors": errors}
    if kind == "wait_notice":
        with anyio.move_on_after(op["timeout"]):
            while op["method"] not in NOTICES:
                await anyio.sleep(0.05)
        return op["method"] in NOTICES
    if kind == "sleep":
        await anyio.sleep(op["seconds"])
        return None
    raise ValueError(f"unknown op {kind}")


async def main():
    transport = json.loads(sys.argv[1])
    ops = json.loads(sys.stdin.read())
    if "http" in transport:
        headers = {}
        if transport.get("token") is not None:
            headers["Authorization"] = f"Bearer {transport['token']}"
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0, read=300.0))
        server = streamable_http_client(transport["http"], http_client=http)
    else:
        command = transport["stdio"]
        server = StdioServerParameters(command=command[0], args=command[1:])
    results = []
    try:
        async with Client(server, read_timeout_seconds=300, message_handler=on_message) as client:
            for op in ops:
                results.append(await run(client, op))
            out = {"protocol": client.protocol_version, "results": results}
    except BaseException as e:  # noqa: BLE001 - reported to the test, which asserts on it
        out = {"error": f"{type(e).__name__}: {e!r}", "results": results}
    print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main)
