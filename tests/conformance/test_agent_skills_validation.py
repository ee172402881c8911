"""`SKILL.md` checks against the Agent Skills reference validator.

For every skill folder of `agent_skills_corpus/` the specification's
reference validator (`agentskills validate`, PyPI `skills-ref`) and the
kernel (`skill_request` with `action: validate` and the folder's path,
sent through jupyter_client to a kernel started from the installed
kernelspec) must agree: both accept or both refuse. The corpus is split
into `valid/` and `invalid/` so that a change of the validator's rules
shows as such rather than as a disagreement.

The binary comes from $SKILLKERNEL_BIN, else <repo>/target/debug/skillkernel.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from kernel_support import KERNEL_NAME, REPLY_TIMEOUT, private_jupyter, shell_reply

CORPUS = Path(__file__).resolve().parent / "agent_skills_corpus"

CASES = sorted(p for group in ("valid", "invalid") for p in (CORPUS / group).iterdir() if p.is_dir())


def _agentskills() -> Path:
    # The console script of the venv running this test.
    path = Path(sys.executable).with_name("agentskills")
    if not path.is_file():
        pytest.fail(f"{path} is missing: pip install -r tests/conformance/requirements.txt", pytrace=False)
    return path


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory):
    """One kernel from the installed kernelspec, in a private prefix."""
    with private_jupyter(tmp_path_factory):
        km = KernelManager(kernel_name=KERNEL_NAME)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=REPLY_TIMEOUT)
            yield kc
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def kernel_verdict(kc, folder: Path) -> tuple[bool, str]:
    """Whether the kernel finds `folder` valid, and what it said."""
    msg = kc.session.msg("skill_request", {"action": "validate", "path": str(folder)})
    kc.shell_channel.send(msg)
    reply = shell_reply(kc, msg["header"]["msg_id"])
    content = reply["content"]
    assert content["status"] == "ok", content
    return content["valid"] is True, "; ".join(e["message"] for e in content["errors"])


def reference_verdict(folder: Path) -> tuple[bool, str]:
    """Whether `agentskills validate` finds `folder` valid, and what it said."""
    done = subprocess.run(
        [str(_agentskills()), "validate", str(folder)], capture_output=True, text=True, timeout=60,
    )
    assert done.returncode in (0, 1), done
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def test_the_corpus_has_both_kinds():
    groups = {case.parent.name for case in CASES}
    assert groups == {"valid", "invalid"}, groups


@pytest.mark.parametrize("folder", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_the_kernel_agrees_with_the_reference_validator(kernel, folder: Path):
    expected = folder.parent.name == "valid"
    reference, said = reference_verdict(folder)
    assert reference == expected, f"the reference validator changed its mind: {said}"
    ours, we_said = kernel_verdict(kernel, folder)
    assert ours == reference, f"reference: {said}\nkernel: {we_said or 'valid'}"
