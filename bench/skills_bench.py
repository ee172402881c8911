#!/usr/bin/env python3
"""Skills benchmark on the daemon: cold start with 500 skills, hot reload.

Generates 500 valid skills in a temporary directory (native prompt skills
in `skill.yaml` and `skill.json`, a few `SKILL.md` skills, native
workflows and loose Skillrunner workflows), then starts the release
binary in the foreground (`skillkernel start -f CONN --config X
--state-dir S`), as Jupyter would, in these scenarios:

* none        — `[skills] project = false`, no `dirs` (built-ins only);
* first       — the 500 skills in `dirs`, a fresh state dir: every
                manifest is parsed and the index is built;
* indexed     — the 500 skills, restarted on the state dir whose
                `skills-index` the first start persisted;
* unindexed   — the 500 skills with `index = false` (every restart parses
                every manifest), for comparison;
* no watch    — as indexed, with `watch = false`: what the watcher's
                start (a recursive inotify watch) costs.

`none` is measured both on a fresh state dir (to compare with `first`)
and restarted on its own state dir (to compare with `indexed`: the
target). For each, two figures over --runs fresh processes:

* start → first `kernel_info_reply` on shell;
* start → a `skill_request {"action": "list"}` answered with every skill
  (checked: ≥ 500 listed, no failures) — in a separate process, so the
  list's own cost does not delay the kernel_info figure;

and the registry's own discovery time from the daemon's log line
(`skills discovered … elapsed_ms`).

Hot reload: on a daemon with the 500 skills (watching, the daemon's
default debounce of 100 ms), one skill's manifest is rewritten with a new
description, and `skill_request {"action": "info"}` is polled every 2 ms
until the new description shows.

The client is the thin pyzmq client of `kernel_bench.py` (connects at
once with a 1 ms reconnect interval, resends every 50 ms until answered).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import zmq
from jupyter_client.connect import write_connection_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_bench import WireClient  # noqa: E402
from benchlib import machine, summary  # noqa: E402

now_ns = time.perf_counter_ns
SKILLS = 500
WORDS = ["summarize", "translate", "review", "explain", "outline", "rewrite",
         "classify", "extract", "draft", "proofread", "plan", "compare"]
TAGS = ["rust", "python", "writing", "code", "data", "email", "legal", "docs"]
AUTHORS = ["Ana Lima", "Bo Chen", "Chidi Okafor", "Dana Weiss"]
DEBOUNCE_MS = 100  # RegistryConfig's default; [skills] does not change it


# --------------------------------------------------------------------------
# The 500 skills
# --------------------------------------------------------------------------


def prompt_yaml(name: str, i: int, variant: int = 0) -> str:
    w = WORDS[i % len(WORDS)]
    return (
        f"name: {name}\nversion: 1.0.0\n"
        f"description: {w} the input for {TAGS[i % 3]} readers, variant {variant}\n"
        f"author: {AUTHORS[i % len(AUTHORS)]}\ncategory: writing\n"
        f"tags: [{TAGS[i % len(TAGS)]}, {TAGS[(i // 3) % len(TAGS)]}]\ntype: prompt\n"
        "parameters:\n  - name: tone\n    type: enum\n    values: [plain, formal]\n    default: plain\n"
        f'template: "{w} this in a {{{{ tone }}}} tone: {{{{ input }}}}"\n'
        "generation:\n  max_tokens: 64\n"
    )


def prompt_json(name: str, i: int) -> str:
    return json.dumps({
        "name": name, "version": "1.0.0",
        "description": f"Writes a headline for {TAGS[i % len(TAGS)]} texts.",
        "tags": [TAGS[i % len(TAGS)]], "type": "prompt",
        "parameters": [{"name": "words", "type": "number", "default": 8}],
        "template": "Write a headline of at most {{ words }} words for:\n{{ input }}",
    }, indent=2)


def agent_skill(name: str, i: int) -> str:
    return (
        f"---\nname: {name}\ndescription: Rewrites {TAGS[i % len(TAGS)]} text in the house style.\n"
        'license: MIT\nmetadata:\n  version: "1.0.0"\n---\n\n'
        "# House style\n\nShort sentences, active voice, no jargon.\n"
    )


def workflow_yaml(name: str, i: int) -> str:
    return (
        f"name: {name}\nversion: 1.0.0\ndescription: Weighs decision {i} - pros and cons, then a verdict.\n"
        "type: workflow\nmax_parallel: 2\nphases:\n"
        "  - id: pros\n    template: \"Reasons for: {{ input }}\"\n"
        "  - id: cons\n    template: \"Reasons against: {{ input }}\"\n"
        "  - id: verdict\n    depends_on: [pros, cons]\n"
        "    template: \"For: {{ phases.pros }} Against: {{ phases.cons }} Verdict?\"\n"
        "output: verdict\n"
    )


def skillrunner_yaml(name: str, i: int) -> str:
    return (
        f"id: {name}\nname: Explain code {i}\nversion: \"1.0.0\"\n"
        "description: Explains a piece of code, then summarizes it.\n"
        "routing:\n  default_profile: cheap\nphases:\n"
        "  - id: walk\n    name: Walk through\n    prompt_template: |\n      Explain: {{.input}}\n"
        "    routing_profile: cheap\n    max_tokens: 96\n"
        "  - id: summary\n    name: Summary\n    prompt_template: |\n"
        "      {{.phases.walk.output}} In one sentence?\n    depends_on:\n      - walk\n"
    )


def generate(root: Path) -> dict[str, Path]:
    """Writes SKILLS skills under root; returns the prompt skills' manifests
    by name (the ones the reload test edits)."""
    kinds = ["workflow"] * 20 + ["skillrunner"] * 20 + ["json"] * 20 + ["md"] * 10
    kinds += ["yaml"] * (SKILLS - len(kinds))
    editable = {}
    for i, kind in enumerate(kinds):
        name = f"{WORDS[i % len(WORDS)]}-{kind}-{i:03}"
        group = root / f"group-{i % 10}"
        if kind == "skillrunner":
            path = group / "workflows" / f"{name}.yaml"
            text = skillrunner_yaml(name, i)
        else:
            manifest = {"yaml": "skill.yaml", "workflow": "skill.yaml", "json": "skill.json", "md": "SKILL.md"}[kind]
            path = group / name / manifest
            text = {"yaml": prompt_yaml, "workflow": workflow_yaml, "json": prompt_json, "md": agent_skill}[kind](name, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if kind == "yaml":
            editable[name] = path
    return editable


# --------------------------------------------------------------------------
# One daemon process
# --------------------------------------------------------------------------


class Daemon:
    """A foreground `skillkernel start` with its own config and state dir."""

    def __init__(self, binary: str, root: Path, skill_dir: Path | None, index: bool = True,
                 watch: bool = True):
        self.binary, self.root = binary, root
        self.state_dir = root / "state"
        self.config = root / "config.toml"
        self.log = root / "stderr.log"
        # `trust = "all"`: the metrics benchmark runs generated command skills.
        lines = ["[skills]", "project = false", 'trust = "all"', f"index = {str(index).lower()}", f"watch = {str(watch).lower()}"]
        if skill_dir is not None:
            lines.append(f"dirs = [{json.dumps(str(skill_dir))}]")
        self.config.write_text("\n".join(lines) + "\n")
        self.env = dict(os.environ)
        self.env.update(
            SKILLKERNEL_SYSTEM_CONFIG="",
            XDG_CONFIG_HOME=str(root / "xdg-config"),
            XDG_DATA_HOME=str(root / "xdg-data"),  # the user's skill dir: empty
            JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> tuple[int, dict]:
        """Starts the process; returns (start time in ns, connection info)."""
        conn_file = str(self.root / f"kernel-{uuid.uuid4().hex[:8]}.json")
        conn_file, conn = write_connection_file(conn_file, ip="127.0.0.1", key=uuid.uuid4().hex.encode())
        conn = dict(conn)
        if isinstance(conn.get("key"), bytes):
            conn["key"] = conn["key"].decode()
        argv = [self.binary, "start", "-f", conn_file, "--config", str(self.config),
                "--state-dir", str(self.state_dir)]
        t0 = now_ns()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, env=self.env, cwd=self.root, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        return t0, conn

    def discovery_ms(self) -> float | None:
        """The registry's own discovery time, from the log line `skills
        discovered … elapsed_ms=N` (the walk, index look-ups and parsing;
        not opening the index or starting the watcher)."""
        found = re.findall(r"skills discovered .*elapsed_ms=(\d+)", self.log.read_text(errors="replace"))
        return float(found[-1]) if found else None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def request(client: WireClient, proc: subprocess.Popen, msg_type: str, content: dict,
            timeout_s: float = 30.0, resend_ms: int = 50) -> tuple[int, dict]:
    """Sends msg_type on shell (again every resend_ms until answered, in case
    the first one raced the bind); returns (reply time in ns, reply content)."""
    reply_type = msg_type.replace("_request", "_reply")
    deadline = now_ns() + int(timeout_s * 1e9)
    pending = {client.send(client.shell, msg_type, content)}
    last_send = now_ns()
    while True:
        if client.shell.poll(1):
            frames = client.shell.recv_multipart()
            t = now_ns()
            got, parent, body = client.parse(frames, want_content_for=(reply_type,))
            if got == reply_type and parent in pending:
                return t, body
        t = now_ns()
        if t > deadline:
            raise TimeoutError(f"no {reply_type} within {timeout_s}s")
        if proc.poll() is not None:
            raise RuntimeError(f"skillkernel exited with {proc.returncode} during the run")
        if t - last_send > resend_ms * 1_000_000:
            pending.add(client.send(client.shell, msg_type, content))
            last_send = t


def check_list(body: dict, want: int) -> None:
    if body.get("status") != "ok":
        sys.exit(f"skill_request list failed: {body}")
    listed = len(body["skills"])
    if listed < want or body["failures"]:
        sys.exit(f"skill_request list: {listed} skills (want ≥ {want}), failures {body['failures'][:3]}")


def one_start(d: Daemon, ctx: zmq.Context, what: str, want: int) -> float:
    """Starts d, times start → the first answer of `what`, stops it; ms.
    The registry's discovery time is left in d.discovered_ms."""
    t0, conn = d.start()
    client = WireClient(conn, ctx)
    try:
        if what == "kernel_info":
            t, _ = request(client, d.proc, "kernel_info_request", {})
        else:
            t, body = request(client, d.proc, "skill_request", {"action": "list"})
            check_list(body, want)
        return (t - t0) / 1e6
    finally:
        client.close()
        d.stop()
        d.discovered_ms = d.discovery_ms()


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


def scenario(binary: str, ctx, tmp: Path, skill_dir: Path | None, fresh: bool, index: bool,
             watch: bool, runs: int, want: int) -> dict:
    """Both figures over `runs` processes each, and the registry's discovery
    time as logged. fresh: a new state dir for every process; else one state
    dir, primed by one untimed start."""
    out, discovery = {}, []
    for what in ("kernel_info", "list"):
        times = []
        shared = Path(tempfile.mkdtemp(dir=tmp))
        if not fresh:
            one_start(Daemon(binary, shared, skill_dir, index, watch), ctx, "list", want)  # persists the index
        for _ in range(runs):
            root = Path(tempfile.mkdtemp(dir=tmp)) if fresh else shared
            d = Daemon(binary, root, skill_dir, index, watch)
            times.append(one_start(d, ctx, what, want))
            if d.discovered_ms is not None:
                discovery.append(d.discovered_ms)
        out[what] = summary(times)
    if discovery:
        out["discovery_logged"] = summary(discovery)
    return out


def bench_reload(binary: str, ctx, tmp: Path, skill_dir: Path, editable: dict[str, Path], rounds: int) -> dict:
    d = Daemon(binary, Path(tempfile.mkdtemp(dir=tmp)), skill_dir)
    _, conn = d.start()
    client = WireClient(conn, ctx)
    times = []
    try:
        _, body = request(client, d.proc, "skill_request", {"action": "list"})
        check_list(body, SKILLS)
        names = sorted(editable)
        for r in range(1, rounds + 1):
            name = names[(r * 37) % len(names)]
            i = int(name.rsplit("-", 1)[1])
            text = prompt_yaml(name, i, variant=1000 + r)
            want = f"variant {1000 + r}"
            t0 = now_ns()
            editable[name].write_text(text)
            while True:
                t, info = request(client, d.proc, "skill_request", {"action": "info", "skill": name})
                if info.get("status") == "ok" and want in info["skill"]["description"]:
                    break
                if (t - t0) > 10e9:
                    sys.exit(f"{name}: the new description did not show within 10 s")
                time.sleep(0.002)
            times.append((t - t0) / 1e6)
            time.sleep(0.3)  # let the watcher settle before the next edit
    finally:
        client.close()
        d.stop()
    s = summary(times)
    s["debounce_ms"] = DEBOUNCE_MS
    s["p50_minus_debounce_ms"] = round(s["p50_ms"] - DEBOUNCE_MS, 2)
    s["p95_minus_debounce_ms"] = round(s["p95_ms"] - DEBOUNCE_MS, 2)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--runs", type=int, default=15, help="processes per scenario and figure")
    ap.add_argument("--reload-rounds", type=int, default=20)
    ap.add_argument("--json", type=Path, help="append the result as one JSON line")
    args = ap.parse_args()
    ctx = zmq.Context()
    results: dict = {"bench": "skills_daemon", "machine": machine(), "skills": SKILLS,
                     "loadavg_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="skills-bench-") as tmp_s:
        tmp = Path(tmp_s)
        skill_dir = tmp / "skills"
        editable = generate(skill_dir)
        # Built-ins are listed in every scenario.
        probe = Daemon(args.binary, Path(tempfile.mkdtemp(dir=tmp)), None)
        _, conn = probe.start()
        client = WireClient(conn, ctx)
        _, body = request(client, probe.proc, "skill_request", {"action": "list"})
        builtins = len(body["skills"])
        client.close()
        probe.stop()
        with_skills = SKILLS + builtins
        for name, skills, fresh, index, watch in [
            ("none_fresh", None, True, True, True),
            ("first_start", skill_dir, True, True, True),
            ("none_restart", None, False, True, True),
            ("indexed_restart", skill_dir, False, True, True),
            ("unindexed_restart", skill_dir, False, False, True),
            ("indexed_restart_no_watch", skill_dir, False, True, False),
        ]:
            print(f"==> {name}", file=sys.stderr)
            want = with_skills if skills else builtins
            results[name] = scenario(args.binary, ctx, tmp, skills, fresh, index, watch, args.runs, want)
            print(json.dumps(results[name]), file=sys.stderr)
        print("==> hot_reload", file=sys.stderr)
        results["hot_reload"] = bench_reload(args.binary, ctx, tmp, skill_dir, editable, args.reload_rounds)
        print(json.dumps(results["hot_reload"]), file=sys.stderr)
    results["builtin_skills"] = builtins
    results["loadavg_after"] = os.getloadavg()[0]
    diff = {}
    for base, subject in [("none_restart", "indexed_restart"), ("none_fresh", "first_start"),
                          ("none_restart", "unindexed_restart"), ("none_restart", "indexed_restart_no_watch")]:
        for what in ("kernel_info", "list"):
            b, s = results[base][what], results[subject][what]
            diff[f"{subject}_minus_{base}_{what}"] = {
                "p50_ms": round(s["p50_ms"] - b["p50_ms"], 2), "p95_ms": round(s["p95_ms"] - b["p95_ms"], 2)}
    results["differences"] = diff
    d = diff["indexed_restart_minus_none_restart_kernel_info"]
    results["target_cold_start_met"] = d["p50_ms"] <= 100 and d["p95_ms"] <= 100
    line = json.dumps(results)
    print(line)
    if args.json:
        with args.json.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
