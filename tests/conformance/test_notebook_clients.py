"""Real Jupyter front ends driving skillkernel end to end.

The "done when" scenario: a new user opens `jupyter console --kernel
skillkernel` or a notebook client, runs `!echo hi`, `%set x = 3`, `%get x`,
`%history`, interrupts a `!sleep 30`, and shuts the kernel down.  Every test
here goes through an unmodified client library -- nbclient, jupyter_client's
KernelManager/BlockingKernelClient, jupyter_console -- against the kernelspec
that `skillkernel install --prefix` writes, so what passes here is what a user
sees.

The binary comes from $SKILLKERNEL_BIN, else <repo>/target/debug/skillkernel
(build it with `cargo build --workspace --bins`).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.session import Session
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from kernel_support import KERNEL_NAME, REPLY_TIMEOUT, private_jupyter, shell_reply

# `!sleep 30` must be cut short well before it would finish on its own.
INTERRUPT_TIMEOUT = 10
# jupyter console starts a Python interpreter and a kernel; be generous.
CONSOLE_TIMEOUT = 90


@pytest.fixture(scope="module", autouse=True)
def jupyter_env(tmp_path_factory: pytest.TempPathFactory):
    """Installs the kernelspec into a private prefix and points Jupyter at it."""
    with private_jupyter(tmp_path_factory) as env:
        yield env


@pytest.fixture
def kernel():
    """A kernel started by KernelManager with a ready BlockingKernelClient."""
    km = KernelManager(kernel_name=KERNEL_NAME)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=REPLY_TIMEOUT)
        yield km, kc
    finally:
        kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)


# -- helpers -----------------------------------------------------------------


def run(kc, code: str, timeout: float = REPLY_TIMEOUT):
    """Executes `code`; returns (execute_reply content, [(msg_type, content)])."""
    outputs: list[tuple[str, dict]] = []
    reply = kc.execute_interactive(
        code, timeout=timeout, output_hook=lambda m: outputs.append((m["msg_type"], m["content"])),
    )
    return reply["content"], outputs


def streams(outputs, name: str = "stdout") -> str:
    return "".join(c["text"] for t, c in outputs if t == "stream" and c["name"] == name)


def iopub_until_idle(kc, msg_id: str, timeout: float = REPLY_TIMEOUT):
    """IOPub messages for `msg_id` up to and including its idle status."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        msg = kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.01))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append((msg["msg_type"], msg["content"]))
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return seen


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live descendant of `pid`."""
    ps = subprocess.run(["ps", "-ww", "-A", "-o", "pid=,ppid=,args="], capture_output=True, text=True, check=True)
    children: dict[int, list[tuple[int, str]]] = {}
    for line in ps.stdout.splitlines():
        fields = line.split(None, 2)
        if len(fields) < 2:
            continue
        children.setdefault(int(fields[1]), []).append((int(fields[0]), fields[2] if len(fields) > 2 else ""))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def sleepers(pid: int) -> list[tuple[int, str]]:
    return [(p, args) for p, args in descendants(pid) if "sleep 30" in args]


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kernel_pid(km: KernelManager) -> int:
    return km.provisioner.process.pid


def notebook(*sources: str):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Skill Kernel", "language": "skill"}
    return nb


# -- 1. nbclient ---------------------------------------------------------------


def test_nbclient_runs_the_scenario_notebook():
    nb = notebook("!echo hi", "%set x = 3", "%get x", "%history")
    nbclient.NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=60).execute()

    echo, set_x, get_x, history = nb.cells
    assert [c.execution_count for c in nb.cells] == [1, 2, 3, 4]

    assert echo.outputs == [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    assert set_x.outputs == []

    assert len(get_x.outputs) == 1, get_x.outputs
    result = get_x.outputs[0]
    assert result.output_type == "execute_result"
    assert result.execution_count == 3
    assert result.data["text/plain"] == "3"
    assert result.data["application/json"] == 3

    history_text = "".join(o.text for o in history.outputs if o.output_type == "stream" and o.name == "stdout")
    for earlier in ("!echo hi", "%set x = 3", "%get x"):
        assert earlier in history_text, history_text

    # nbclient records the kernel's language_info; the result must be a valid notebook.
    assert nb.metadata["language_info"]["name"] == "skill"
    nbformat.validate(nb)
    nbformat.validate(nbformat.reads(nbformat.writes(nb), as_version=4))


def test_nbclient_raises_cell_execution_error_on_a_failing_cell():
    nb = notebook("%set x = 3", "%get nope", "!echo never")
    with pytest.raises(CellExecutionError) as excinfo:
        nbclient.NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=60).execute()
    assert excinfo.value.ename == "NameError"
    assert "nope" in excinfo.value.evalue

    failing = nb.cells[1]
    assert failing.execution_count == 2
    assert [o.output_type for o in failing.outputs] == ["error"]
    assert failing.outputs[0].ename == "NameError"
    # Execution stops at the failing cell.
    assert nb.cells[2].execution_count is None and nb.cells[2].outputs == []


def test_nbclient_allow_errors_records_the_error_and_continues():
    nb = notebook("%get nope", "!echo later")
    nbclient.NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=60, allow_errors=True).execute()
    failing, later = nb.cells
    assert [(o.output_type, o.get("ename")) for o in failing.outputs] == [("error", "NameError")]
    assert failing.outputs[0].traceback, "an error output needs a traceback"
    assert later.execution_count == 2
    assert later.outputs == [{"output_type": "stream", "name": "stdout", "text": "later\n"}]


def test_nbclient_interrupts_a_cell_that_times_out():
    """nbclient's interrupt_on_timeout goes through the kernelspec's interrupt_mode."""
    nb = notebook("!sleep 30", "!echo after")
    started = time.monotonic()
    nbclient.NotebookClient(
        nb, kernel_name=KERNEL_NAME, timeout=2, interrupt_on_timeout=True, allow_errors=True,
    ).execute()
    assert time.monotonic() - started < 20, "the interrupted !sleep 30 ran to completion"
    sleeper, after = nb.cells
    assert [(o.output_type, o.get("ename")) for o in sleeper.outputs] == [("error", "KeyboardInterrupt")]
    assert after.outputs == [{"output_type": "stream", "name": "stdout", "text": "after\n"}]


# -- 2. KernelManager + BlockingKernelClient: interrupt, shutdown, restart ----


def test_a_client_that_connects_while_the_kernel_starts_sees_its_first_cell(jupyter_env):
    """What jupyter console does: launch the kernel, connect at once, send
    kernel_info and then execute without waiting for IOPub. Its SUB socket
    often gets through after the kernel has answered both; the kernel holds
    what it published until the first subscriber arrives, so the first
    cell's output and idle status still reach it. Several launches, since
    the race is won or lost by milliseconds."""
    for attempt in range(5):
        km = KernelManager(kernel_name=KERNEL_NAME)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            info_id = kc.kernel_info()
            assert shell_reply(kc, info_id)["msg_type"] == "kernel_info_reply"
            exec_id = kc.execute("!echo first")
            try:
                seen = iopub_until_idle(kc, exec_id, timeout=10)
            except queue.Empty:
                pytest.fail(f"launch {attempt}: the first cell's idle status never arrived on IOPub")
            assert streams(seen) == "first\n", f"launch {attempt}: {seen}"
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def _next_iopub(sub, session: Session, timeout: float = REPLY_TIMEOUT) -> dict:
    """The next IOPub message on a raw SUB socket, signature checked."""
    if not sub.poll(int(timeout * 1000)):
        raise queue.Empty
    _, frames = session.feed_identities(sub.recv_multipart())
    return session.deserialize(frames)


def _own_session(km) -> Session:
    """A session per socket: each remembers the signatures it has seen."""
    return Session(key=km.session.key, signature_scheme=km.session.signature_scheme)


def test_each_iopub_subscriber_is_welcomed_first_and_alone(kernel):
    """Protocol 5.4: XPUB answers each subscription with iopub_welcome, to
    that subscriber alone and before anything broadcast after it."""
    km, kc = kernel
    first = km.connect_iopub()
    second = None
    try:
        sessions = {first: _own_session(km)}
        welcome = _next_iopub(first, sessions[first], timeout=5)
        assert welcome["msg_type"] == "iopub_welcome"
        assert welcome["content"] == {"subscription": ""}
        assert welcome["parent_header"] == {}

        second = km.connect_iopub()
        sessions[second] = _own_session(km)
        assert _next_iopub(second, sessions[second], timeout=5)["msg_type"] == "iopub_welcome"
        msg_id = kc.execute("!echo both")
        for sub in (first, second):
            seen = []
            while not (seen and seen[-1] == ("status", "idle")):
                msg = _next_iopub(sub, sessions[sub])
                state = msg["content"].get("execution_state")
                seen.append((msg["msg_type"], state))
                if msg["msg_type"] == "iopub_welcome":
                    pytest.fail("a second subscriber's welcome reached the first")
            assert ("stream", None) in seen, seen
            assert msg["parent_header"]["msg_id"] == msg_id
    finally:
        first.close(linger=0)
        if second is not None:
            second.close(linger=0)


def test_interrupt_a_running_command(kernel):
    km, kc = kernel
    assert km.kernel_spec.interrupt_mode == "message"
    pid = kernel_pid(km)

    msg_id = kc.execute("!sleep 30")
    assert wait_for(lambda: sleepers(pid), timeout=INTERRUPT_TIMEOUT), (
        f"`!sleep 30` never showed up under the kernel; descendants: {descendants(pid)}"
    )
    time.sleep(1)

    interrupted_at = time.monotonic()
    km.interrupt_kernel()
    try:
        reply = shell_reply(kc, msg_id, timeout=INTERRUPT_TIMEOUT)
    except queue.Empty:
        pytest.fail(f"no execute_reply within {INTERRUPT_TIMEOUT}s of interrupt_kernel()")
    assert time.monotonic() - interrupted_at < INTERRUPT_TIMEOUT

    content = reply["content"]
    assert content["status"] == "error", content
    assert content["ename"] == "KeyboardInterrupt", content
    assert content["execution_count"] == 1

    published = iopub_until_idle(kc, msg_id)
    errors = [c for t, c in published if t == "error"]
    assert [e["ename"] for e in errors] == ["KeyboardInterrupt"], published

    # The shell command itself is gone, not left running behind the kernel.
    assert wait_for(lambda: not sleepers(pid), timeout=5), f"still running: {sleepers(pid)}"

    reply, outputs = run(kc, "!echo after")
    assert reply["status"] == "ok", reply
    assert reply["execution_count"] == 2
    assert streams(outputs) == "after\n"


def test_shutdown_ends_the_kernel_process(kernel):
    km, kc = kernel
    reply, outputs = run(kc, "!echo hi")
    assert reply["status"] == "ok" and streams(outputs) == "hi\n"

    process = km.provisioner.process
    pid = process.pid
    started = time.monotonic()
    km.shutdown_kernel(now=False)
    elapsed = time.monotonic() - started

    assert not km.is_alive()
    assert not pid_alive(pid), f"kernel process {pid} survived shutdown"
    # jupyter_client escalates to SIGTERM/SIGKILL only after shutdown_wait_time;
    # a kernel that honours shutdown_request exits well before that, cleanly.
    assert elapsed < km.shutdown_wait_time, f"graceful shutdown took {elapsed:.1f}s"
    assert process.returncode == 0, f"kernel exited with {process.returncode}"


def test_restart_gives_a_fresh_working_kernel(kernel):
    km, kc = kernel
    run(kc, "%set x = 3")
    reply, outputs = run(kc, "%get x")
    assert reply["execution_count"] == 2
    old_pid = kernel_pid(km)

    km.restart_kernel()
    kc.wait_for_ready(timeout=REPLY_TIMEOUT)
    assert km.is_alive()
    assert kernel_pid(km) != old_pid
    assert not pid_alive(old_pid), f"pre-restart kernel {old_pid} is still running"

    reply, outputs = run(kc, "!echo again")
    assert reply["status"] == "ok", reply
    assert reply["execution_count"] == 1, "execution count should reset on restart"
    assert streams(outputs) == "again\n"

    reply, outputs = run(kc, "%get x")
    assert reply["status"] == "error" and reply["ename"] == "NameError", (
        f"session variables should not survive a restart: {reply}"
    )
    assert reply["execution_count"] == 2


# -- 3. stdin --------------------------------------------------------------------


def _input_request(kc, code: str):
    msg_id = kc.execute(code, allow_stdin=True)
    try:
        request = kc.get_stdin_msg(timeout=REPLY_TIMEOUT)
    except queue.Empty:
        pytest.fail(f"no input_request for {code!r}")
    assert request["msg_type"] == "input_request"
    assert request["parent_header"]["msg_id"] == msg_id
    return msg_id, request


def _expect_ok_reply(kc, msg_id: str, how: str):
    try:
        reply = shell_reply(kc, msg_id, timeout=10)
    except queue.Empty:
        pytest.fail(f"the kernel never finished the cell after the input_reply sent {how}")
    assert reply["content"]["status"] == "ok", reply["content"]
    iopub_until_idle(kc, msg_id)


def test_input_answered_with_client_input(kernel):
    """The path jupyter_client.BlockingKernelClient.input() -- and so jupyter console -- takes.

    `kc.input()` sends an input_reply with an empty parent header; ipykernel
    accepts that, since only one input_request is ever outstanding.
    """
    _, kc = kernel
    msg_id, request = _input_request(kc, "%input name What is your name?")
    assert request["content"] == {"prompt": "What is your name?", "password": False}

    kc.input("Ada")
    _expect_ok_reply(kc, msg_id, "by kc.input() (no parent header)")

    reply, outputs = run(kc, "%get name")
    assert reply["status"] == "ok", reply
    results = [c for t, c in outputs if t == "execute_result"]
    assert [r["data"]["text/plain"] for r in results] == ["Ada"]


def test_input_answered_with_a_parented_reply(kernel):
    """The path JupyterLab takes: the input_reply's parent is the input_request."""
    _, kc = kernel
    msg_id, request = _input_request(kc, "%input name What is your name?")
    kc.stdin_channel.send(kc.session.msg("input_reply", {"value": "Ada"}, parent=request["header"]))
    _expect_ok_reply(kc, msg_id, "with the input_request as parent")

    reply, outputs = run(kc, "%get name")
    results = [c for t, c in outputs if t == "execute_result"]
    assert [r["data"]["text/plain"] for r in results] == ["Ada"]


def test_password_input_is_flagged(kernel):
    _, kc = kernel
    msg_id, request = _input_request(kc, "%input --password token Token:")
    assert request["content"] == {"prompt": "Token:", "password": True}
    kc.stdin_channel.send(kc.session.msg("input_reply", {"value": "s3cret"}, parent=request["header"]))
    _expect_ok_reply(kc, msg_id, "with the input_request as parent")


def test_input_without_allow_stdin_fails_cleanly(kernel):
    _, kc = kernel
    reply = kc.execute("%input name", allow_stdin=False, reply=True, timeout=REPLY_TIMEOUT)["content"]
    assert reply["status"] == "error"
    assert reply["ename"] == "StdinNotImplementedError", reply
    with pytest.raises(queue.Empty):
        kc.get_stdin_msg(timeout=0.5)


# -- 4. jupyter console ------------------------------------------------------------


class Console:
    """`jupyter console --kernel skillkernel --simple-prompt` on piped stdin.

    Output goes to files, so a console blocked on input never blocks on a
    full pipe and its output can be read while it runs.
    """

    def __init__(self, workdir: Path, runtime: Path):
        self.runtime = runtime
        self.out_path, self.err_path = workdir / "console.out", workdir / "console.err"
        self._out, self._err = open(self.out_path, "w"), open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_console", "--kernel", KERNEL_NAME, "--simple-prompt"],
            stdin=subprocess.PIPE, stdout=self._out, stderr=self._err,
            text=True, env=dict(os.environ), cwd=workdir,
        )

    def send(self, *lines: str) -> None:
        self.proc.stdin.write("".join(line + "\n" for line in lines))
        self.proc.stdin.flush()

    def eof(self) -> None:
        """Ctrl-D: the console asks "Do you really want to exit ([y]/n)?",
        reads EOF and takes the default, shutting its kernel down."""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    @property
    def out(self) -> str:
        return self.out_path.read_text()

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    @property
    def detail(self) -> str:
        return f"\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"

    def kernel_pid(self) -> int | None:
        kernels = _console_kernels(self.runtime)
        return kernels[0][0] if kernels else None

    def errors(self) -> list[str]:
        """Error lines the console printed (the kernel's own log lines aside)."""
        return [
            line for line in self.err.splitlines()
            if re.search(r"Error|Traceback", line) and not LOG_LINE.match(line)
        ]

    def close(self, timeout: float = CONSOLE_TIMEOUT) -> None:
        self.eof()
        if not self.wait(timeout):
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        self._err.close()
        # A console that had to be killed leaves its kernel behind; stop it.
        if not wait_for(lambda: not _console_kernels(self.runtime), timeout=5):
            for pid, _ in _console_kernels(self.runtime):
                os.kill(pid, signal.SIGKILL)


# The kernel's own tracing output, which it writes to the console's stderr.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s")


def _console_kernels(runtime: Path) -> list[tuple[int, str]]:
    """skillkernel processes serving a connection file in our runtime dir."""
    ps = subprocess.run(["ps", "-ww", "-A", "-o", "pid=,args="], capture_output=True, text=True, check=True)
    found = []
    for line in ps.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "skillkernel" in args and str(runtime) in args:
            found.append((int(pid), args))
    return found


def test_jupyter_console_session(jupyter_env, tmp_path):
    """Type the scenario into jupyter console, then end the session with Ctrl-D."""
    console = Console(tmp_path, jupyter_env["runtime"])
    try:
        console.send("!echo hi", "%set x = 3", "%get x", "%history")
        console.eof()
        assert console.wait(CONSOLE_TIMEOUT), f"jupyter console did not finish{console.detail}"
    finally:
        console.close()
    out, err, detail = console.out, console.err, console.detail
    assert console.proc.returncode == 0, f"jupyter console exited with {console.proc.returncode}{detail}"

    assert "skillkernel" in out, f"no kernel banner{detail}"
    assert "In [1]: hi\n" in out, detail
    assert "Out[3]: 3" in out, detail
    for earlier in ("1: !echo hi", "2: %set x = 3", "3: %get x"):
        assert earlier in out, f"%history did not list {earlier!r}{detail}"
    assert not console.errors(), detail
    assert "Shutting down kernel" in out, detail
    assert wait_for(lambda: not _console_kernels(jupyter_env["runtime"]), timeout=10), (
        f"kernel outlived jupyter console: {_console_kernels(jupyter_env['runtime'])}"
    )


def test_jupyter_console_exit_command(jupyter_env, tmp_path):
    """`exit` ends a console session, as the console's own help promises.

    jupyter console sends `exit` to the kernel as a cell and leaves only when
    the execute_reply carries an `ask_exit` payload (the messaging spec's
    payload for this); stdin stays open here, so Ctrl-D cannot end it instead.
    """
    console = Console(tmp_path, jupyter_env["runtime"])
    try:
        console.send("!echo hi")
        assert wait_for(lambda: "In [1]: hi" in console.out, timeout=CONSOLE_TIMEOUT, interval=0.2), (
            f"jupyter console never ran `!echo hi`{console.detail}"
        )
        console.send("exit")
        exited = console.wait(20)
    finally:
        console.close()  # Ctrl-D if still running, so the kernel is shut down either way
    detail = console.detail
    assert exited, f"jupyter console did not exit after `exit`{detail}"
    assert console.proc.returncode == 0, detail
    assert not console.errors(), f"`exit` ran as a cell{detail}"
    assert wait_for(lambda: not _console_kernels(jupyter_env["runtime"]), timeout=10), (
        f"kernel outlived jupyter console: {_console_kernels(jupyter_env['runtime'])}"
    )


def test_jupyter_console_ctrl_c_interrupts_a_command(jupyter_env, tmp_path):
    """Ctrl-C in jupyter console (SIGINT to the console) interrupts `!sleep 30`."""
    console = Console(tmp_path, jupyter_env["runtime"])
    try:
        console.send("!sleep 30")
        assert wait_for(lambda: console.kernel_pid() and sleepers(console.kernel_pid()),
                        timeout=CONSOLE_TIMEOUT, interval=0.2), (
            f"`!sleep 30` never started{console.detail}"
        )
        time.sleep(1)
        pid = console.kernel_pid()
        interrupted_at = time.monotonic()
        console.proc.send_signal(signal.SIGINT)
        assert wait_for(lambda: not sleepers(pid), timeout=INTERRUPT_TIMEOUT), (
            f"`!sleep 30` survived Ctrl-C: {sleepers(pid)}{console.detail}"
        )
        assert wait_for(lambda: "KeyboardInterrupt" in console.err, timeout=INTERRUPT_TIMEOUT), (
            f"no KeyboardInterrupt shown{console.detail}"
        )
        assert time.monotonic() - interrupted_at < INTERRUPT_TIMEOUT
        console.send("!echo after")
        console.eof()
        assert console.wait(CONSOLE_TIMEOUT), f"jupyter console did not finish{console.detail}"
    finally:
        console.close()
    out, detail = console.out, console.detail
    assert console.proc.returncode == 0, detail
    assert "In [2]: after\n" in out, detail
    assert "Shutting down kernel" in out, detail


def test_jupyter_console_answers_input(jupyter_env, tmp_path):
    """`%input` in jupyter console: the user types the answer at the prompt."""
    console = Console(tmp_path, jupyter_env["runtime"])
    try:
        console.send("%input name What is your name?")
        assert wait_for(lambda: "What is your name?" in console.out, timeout=CONSOLE_TIMEOUT, interval=0.2), (
            f"the console never showed the input prompt{console.detail}"
        )
        console.send("Ada", "%get name")
        got_it = wait_for(lambda: "Out[2]: Ada" in console.out, timeout=20, interval=0.2)
    finally:
        console.close(timeout=20)
    assert got_it, f"`%get name` never showed Ada{console.detail}"
    assert console.proc.returncode == 0, console.detail
    assert not console.errors(), console.detail
