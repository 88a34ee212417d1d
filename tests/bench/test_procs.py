"""Running a program to completion with its CPU and memory (real child processes)."""

from __future__ import annotations

import sys

from bench.procs import run_metered

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nprint('done')"


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
