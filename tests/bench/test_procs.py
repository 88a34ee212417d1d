"""CPU and memory metering of process trees (real child processes, a second or so)."""

from __future__ import annotations

import subprocess
import sys

from bench.procs import Meter, cpu_delta, run_metered

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nprint('done')"


def test_cpu_delta_counts_reaped_children_once() -> None:
    # pid 2 died during the run and was reaped by pid 1, whose children time now holds
    # pid 2's whole life (0.5 before + 0.25 during).
    before = {1: 1.0, 2: 0.5}
    after = {1: 1.0 + 0.1 + 0.75}
    assert abs(cpu_delta(before, after) - 0.35) < 1e-9


def test_run_metered_reports_output_and_cpu() -> None:
    done = run_metered([sys.executable, "-c", BURN], timeout=30)
    assert done.returncode == 0
    assert done.stdout.strip() == "done"
    assert done.cpu_s >= 0.25
    assert done.max_rss > 1 << 20


def test_run_metered_kills_after_timeout() -> None:
    done = run_metered([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    assert done.returncode != 0
    assert done.wall_s < 30


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
