"""CPU and memory metering of process trees with psutil (a real child, a second or so).

psutil comes with the bench extra; ``make test`` installs only the test extra, so this
module is skipped until the test extra includes psutil (asked of the lead).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("psutil", reason="psutil is in the bench extra, not the test extra")

from bench.meter import Meter, cpu_delta

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nprint('done')"


def test_cpu_delta_counts_reaped_children_once() -> None:
    # pid 2 died during the run and was reaped by pid 1, whose children time now holds
    # pid 2's whole life (0.5 before + 0.25 during).
    before = {1: 1.0, 2: 0.5}
    after = {1: 1.0 + 0.1 + 0.75}
    assert abs(cpu_delta(before, after) - 0.35) < 1e-9


def test_meter_measures_a_running_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN + "\nimport time; time.sleep(0.5)"])
    try:
        meter = Meter({"side": lambda: [child.pid]}, interval=0.05)
        with meter:
            child.wait(30)
    finally:
        child.kill()
        child.wait()
    usage = meter.usage["side"]
    assert usage.peak_rss > 1 << 20
    assert usage.wall_s > 0
    assert usage.machine_busy_cores >= 0
