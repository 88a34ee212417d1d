"""The shared worker supervision (mailcore/workers.py) with real child processes: a
worker that ends is started again, and stop() ends every one — SIGKILL for one that
ignores SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from mailcore.logging import get_logger
from mailcore.workers import Workers

# a child that ignores SIGTERM (a worker stuck in a long request), or ends after ``n`` s
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


class Sleepers(Workers):
    kind = "test worker"
    stop_grace = 0.5

    def __init__(self, count: int, code: str) -> None:
        super().__init__(count, get_logger("test"))
        self.code = code
        self.spawned = 0

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.spawned += 1
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", self.code, stdout=asyncio.subprocess.PIPE
        )


async def test_a_worker_that_ends_is_started_again() -> None:
    workers = Sleepers(2, "import time; time.sleep(60)")
    await workers.start()
    try:
        first = workers.pids
        assert len(first) == 2 and workers.spawned == 2
        assert workers.procs[0] is not None
        workers.procs[0].kill()
        while workers.pids[0] == first[0]:  # pytest-timeout guards a hang
            await asyncio.sleep(0.05)
        assert workers.spawned == 3 and workers.pids[1] == first[1]
    finally:
        await workers.stop()
    assert all(p is not None and p.returncode is not None for p in workers.procs)


async def test_stop_kills_a_worker_that_ignores_sigterm() -> None:
    workers = Sleepers(1, STUBBORN)
    await workers.start()
    proc = workers.procs[0]
    assert proc is not None and proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"  # its handler is set
    await workers.stop()
    assert proc.returncode == -9  # SIGKILL after stop_grace
    assert workers.spawned == 1  # no restart after stop()
