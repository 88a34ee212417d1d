"""Worker processes a service process starts beside itself on the same ports
(``SO_REUSEPORT``): the store's IMAP workers (services/store/imap_workers.py) and a webmail
node's HTTP workers (services/webmail/workers.py) share this supervision.

Each worker is started once, started again (after :data:`RESTART_DELAY`) when it ends on
its own, and stopped with the service: SIGTERM to all, then SIGKILL to any that has not
ended after the subclass's ``stop_grace`` seconds. A subclass says how one is spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESTART_DELAY = 1.0  # seconds before a worker that ended is started again


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment for a worker: the project on ``PYTHONPATH``, then
    ``overrides`` (the ports the service process bound, the settings that are its alone)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **overrides}


class Workers(ABC):
    """``count`` worker processes, supervised. ``kind`` names them in the log lines."""

    kind = "worker"
    stop_grace = 15.0

    def __init__(self, count: int, log: Any) -> None:
        self.count = count
        self.log = log
        self.procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @abstractmethod
    async def _spawn(self) -> asyncio.subprocess.Process:
        """Start one worker process (what each subclass runs)."""

    async def start(self) -> None:
        for i in range(self.count):
            self.procs[i] = await self._spawn()
            self._tasks.append(asyncio.create_task(self._watch(i), name=f"{self.kind}-{i}"))
        self.log.info(f"{self.kind}s started", workers=self.count, pids=self.pids)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    def _running(self) -> bool:
        return not self._stopping

    async def _watch(self, i: int) -> None:
        while self._running():
            proc = self.procs[i]
            assert proc is not None
            status = await proc.wait()
            if not self._running():
                return
            self.log.error(f"{self.kind} ended; restarting", pid=proc.pid, status=status)
            await asyncio.sleep(RESTART_DELAY)
            if self._running():
                self.procs[i] = await self._spawn()

    async def stop(self) -> None:
        """SIGTERM to every worker (each finishes its sessions or requests), SIGKILL after
        ``stop_grace`` seconds."""
        self._stopping = True
        live = [p for p in self.procs if p is not None and p.returncode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in live:
            try:
                await asyncio.wait_for(p.wait(), self.stop_grace)
            except TimeoutError:
                self.log.error(f"{self.kind} did not stop; killed", pid=p.pid)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["RESTART_DELAY", "Workers", "child_env"]
