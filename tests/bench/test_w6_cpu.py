"""W6's catch-up CPU per process: read from the pair's live processes, summed per record."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any, cast

import pytest

pytest.importorskip("psutil", reason="psutil is in the bench extra, not the test extra")

from bench.workloads.w6_mirror import catchup_cpu_note, process_cpu

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nprint('done')"


def test_process_cpu_names_each_service_by_side() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BURN + "\nimport sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"done\n"  # it has burnt its 0.3 s
        pair = cast(Any, SimpleNamespace(procs={"store": child}))
        cpu = process_cpu({"b": pair})
        assert list(cpu) == ["store-b"] and cpu["store-b"] >= 0.3
    finally:
        child.kill()
        child.wait()


def test_the_note_sums_per_record_busiest_first() -> None:
    note = catchup_cpu_note({"mirror-b": 1.0, "store-b": 3.0, "nats-a": 2.0}, 2000)
    assert note == (
        "catch-up CPU: 6.00 s in all (3.00 ms a record): "
        "store-b 3.00 s, nats-a 2.00 s, mirror-b 1.00 s"
    )
