"""POSTERN_FAULT_POINT: off by default, fires at the n-th pass, rejects unknown names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mailcore import faults

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
from mailcore import faults
for i in range(5):
    print(i, flush=True)
    faults.crash_point("store.after_commit")
    faults.crash_point("filter.after_scan")
print("survived", flush=True)
"""


def run(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if spec is not None:
        env[faults.ENV] = spec
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_unset_never_fires() -> None:
    out = run(None)
    assert out.returncode == 0 and "survived" in out.stdout


def test_fires_at_the_nth_pass_with_sigkill() -> None:
    out = run("store.after_commit@3")
    assert out.returncode == -signal.SIGKILL
    assert out.stdout.split() == ["0", "1", "2"]


def test_other_point_does_not_fire() -> None:
    out = run("filter.after_puback")
    assert out.returncode == 0


@pytest.mark.parametrize("spec", ["nope", "store.after_commit@0", "store.after_commit@x"])
def test_bad_spec_is_refused(spec: str) -> None:
    with pytest.raises(faults.FaultSpecError):
        faults.parse(spec)


def test_parse_default_count() -> None:
    assert faults.parse("filter.after_250") == ("filter.after_250", 1)
    assert faults.parse("  ") is None
