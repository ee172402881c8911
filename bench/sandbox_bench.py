#!/usr/bin/env python3
"""Sandbox benchmark: the set-up cost the sandbox adds to one command.

Spawns `/bin/true` N times each way, interleaved (so drift and noise hit
both alike), on the release binary:

* bare      — spawn, wait;
* sandboxed — as the daemon will: the default policy for a temporary
              workspace written to a pipe, `skillkernel sandbox-exec
              --policy-fd R --status-fd W -- /bin/true`, the status pipe
              read to EOF (the `applied` line), wait. The run's pids
              cgroup (root only) is then removed, timed apart (`cleanup`:
              the daemon can do it after the reply);
* no_pids   — the same with `limits.processes` unset, so no pids cgroup:
              what the cgroup layer costs, by difference.

Reports p50/p95 per way, the sandboxed − bare difference of the p50s and
p95s with their ratios, and (last line of stdout) one JSON object.
Target (issue 6): set-up cost ≤ 5 ms over a bare spawn.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

now = time.perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, summary as _summary  # noqa: E402


def summary(values_ms: list[float]) -> dict:
    return _summary(values_ms, 3)
PROGRAM = "/bin/true"
TARGET_MS = 5.0


def bare() -> float:
    t = now()
    subprocess.Popen([PROGRAM]).wait()
    return now() - t


def remove_cgroup(group: str) -> None:
    """What the daemon's `cgroup::remove_run_cgroup` does: rmdir, retried
    while the kernel still counts the reaped program."""
    for _ in range(40):
        try:
            os.rmdir(group)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.005)
    raise RuntimeError(f"cannot remove {group}: still busy")


def sandboxed(binary: str, policy: bytes, cleanup_ms: list[float] | None = None) -> float:
    """Spawn to exit, as the daemon's command path sees it; the pids
    cgroup's removal (which the daemon can do after replying) is timed
    apart, into `cleanup_ms`."""
    t = now()
    policy_r, policy_w = os.pipe()
    status_r, status_w = os.pipe()
    os.write(policy_w, policy)  # a few hundred bytes: fits the pipe buffer
    os.close(policy_w)
    child = subprocess.Popen(
        [binary, "sandbox-exec", "--policy-fd", str(policy_r), "--status-fd", str(status_w), "--", PROGRAM],
        pass_fds=(policy_r, status_w),
    )
    os.close(policy_r)
    os.close(status_w)
    status = b""
    while chunk := os.read(status_r, 65536):
        status += chunk
    os.close(status_r)
    code = child.wait()
    elapsed = now() - t
    line = json.loads(status.splitlines()[0])
    if line.get("event") != "applied" or code != 0:
        raise RuntimeError(f"sandbox-exec failed (exit {code}): {status!r}")
    group = line["processes"].get("cgroup")
    if group:
        t = now()
        remove_cgroup(group)
        if cleanup_ms is not None:
            cleanup_ms.append((now() - t) * 1000)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as workspace:
        policy = json.dumps({"workspace": workspace}).encode()
        no_pids = json.dumps({"workspace": workspace, "limits": {"processes": None}}).encode()
        # What the daemon adds to every policy: the home directory's
        # toolchains found through PATH (as `sandbox-exec --readable` says).
        readable = json.loads(
            subprocess.run([args.binary, "sandbox-exec", "--readable"], capture_output=True, check=True).stdout
        )
        toolchains = json.dumps(
            {"workspace": workspace, "read": readable["default_read"] + readable["toolchains"]}
        ).encode()
        # A connection file kept in the workspace: on the deny list, inside
        # a grant, so hidden for each run — masked in a mount namespace of
        # its own (the default), or granted around with Landlock alone.
        kernel_json = os.path.join(workspace, "kernel-bench.json")
        Path(kernel_json).write_text("{}")
        Path(workspace, "notes.txt").write_text("notes")
        hidden = {
            "workspace": workspace,
            "read": readable["default_read"] + readable["toolchains"],
            "deny": [kernel_json],
        }
        masked = json.dumps(hidden).encode()
        around = json.dumps({**hidden, "mount_namespace": False}).encode()
        cleanup: list[float] = []
        ways = {
            "bare": bare,
            "sandboxed": lambda: sandboxed(args.binary, policy, cleanup),
            "no_pids": lambda: sandboxed(args.binary, no_pids),
            "toolchains": lambda: sandboxed(args.binary, toolchains),
            "masked": lambda: sandboxed(args.binary, masked),
            "around": lambda: sandboxed(args.binary, around),
        }
        probe = subprocess.run([args.binary, "sandbox-exec", "--probe"], capture_output=True, check=True)
        layers = {k: v["available"] for k, v in json.loads(probe.stdout).items() if isinstance(v, dict)}
        for _ in range(args.warmup):
            for run in ways.values():
                run()
        cleanup.clear()
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.runs):
            for name, run in ways.items():
                times[name].append(run() * 1000)

    s = {name: summary(values) for name, values in times.items()}
    if cleanup:
        s["cleanup"] = summary(cleanup)
    b, sb = s["bare"], s["sandboxed"]
    overhead = {
        "p50_ms": round(sb["p50_ms"] - b["p50_ms"], 3),
        "p95_ms": round(sb["p95_ms"] - b["p95_ms"], 3),
        "p50_ratio": round(sb["p50_ms"] / b["p50_ms"], 2),
        "p95_ratio": round(sb["p95_ms"] / b["p95_ms"], 2),
        "pids_cgroup_p50_ms": round(sb["p50_ms"] - s["no_pids"]["p50_ms"], 3),
        "toolchains_p50_ms": round(s["toolchains"]["p50_ms"] - b["p50_ms"], 3),
        "toolchains_p95_ms": round(s["toolchains"]["p95_ms"] - b["p95_ms"], 3),
        "masked_p50_ms": round(s["masked"]["p50_ms"] - b["p50_ms"], 3),
        "around_p50_ms": round(s["around"]["p50_ms"] - b["p50_ms"], 3),
    }
    result = {
        "machine": machine(),
        "uid": os.getuid(),
        "layers": layers,
        "program": PROGRAM,
        "toolchain_roots": readable["toolchains"],
        **s,
        "overhead": overhead,
        "target_ms": TARGET_MS,
        "met": overhead["p50_ms"] <= TARGET_MS,
    }

    print(f"machine: {result['machine']}; uid {os.getuid()}; layers {layers}")
    print(f"{'':<28}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for name, label in [
        ("bare", "bare spawn"),
        ("sandboxed", "sandbox-exec"),
        ("no_pids", "sandbox-exec, no pids cgroup"),
        ("toolchains", "sandbox-exec + toolchains"),
        ("masked", "+ a denied file, masked"),
        ("around", "+ a denied file, around"),
    ]:
        print(f"{label:<28}{s[name]['p50_ms']:>10.3f}{s[name]['p95_ms']:>10.3f}{s[name]['max_ms']:>10.3f}")
    if cleanup:
        c = s["cleanup"]
        print(f"{'pids cgroup rmdir (apart)':<28}{c['p50_ms']:>10.3f}{c['p95_ms']:>10.3f}{c['max_ms']:>10.3f}")
    print(
        f"set-up cost: p50 +{overhead['p50_ms']:.3f} ms ({overhead['p50_ratio']}x), "
        f"p95 +{overhead['p95_ms']:.3f} ms ({overhead['p95_ratio']}x); "
        f"pids cgroup p50 +{overhead['pids_cgroup_p50_ms']:.3f} ms; "
        f"with the {len(readable['toolchains'])} toolchain roots p50 +{overhead['toolchains_p50_ms']:.3f} ms; "
        f"and a denied file in the workspace, masked +{overhead['masked_p50_ms']:.3f} ms, "
        f"granted around +{overhead['around_p50_ms']:.3f} ms; "
        f"target <= {TARGET_MS} ms: {'met' if result['met'] else 'NOT met'}"
    )
    text = json.dumps(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
