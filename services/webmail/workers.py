"""A webmail node's worker processes (``webmail_workers`` > 1).

The service process binds the HTTP port (with ``SO_REUSEPORT``) and starts the others,
``python -m services.webmail.worker``, each of which binds the same port and serves the
same application with its own NATS connection and IMAP pool: sessions, the login policy
and preferences live in NATS, so any process serves any request. A worker that ends on
its own is started again; all are stopped (SIGTERM, then SIGKILL) when the service
process stops, and each stops by itself when the service process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from mailcore.logging import get_logger

log = get_logger("webmail")

ROOT = Path(__file__).resolve().parents[2]
AUTO_MAX = 4  # processes when webmail_workers is 0 (one per core, at most this many)
RESTART_DELAY = 1.0  # seconds before a worker that ended is started again
STOP_GRACE = 15.0  # seconds a worker has to stop after SIGTERM


def worker_count(configured: int) -> int:
    """How many processes serve the node: ``configured``, or for 0 one per CPU core this
    process may run on, at most :data:`AUTO_MAX`."""
    if configured > 0:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, AUTO_MAX))


class HttpWorkers:
    def __init__(self, count: int, *, port: int) -> None:
        self.count = count
        self.port = port
        self.procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "POSTERN_HTTP_PORT": str(self.port),  # the port the service process bound
            "POSTERN_WEBMAIL_OPS_PORT": "0",  # the service process's alone
            "POSTERN_OPS_PORT": "0",
        }

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.webmail.worker",
            "--parent",
            str(os.getpid()),
            env=self._env(),
            stdin=asyncio.subprocess.DEVNULL,
        )

    async def start(self) -> None:
        for i in range(self.count):
            self.procs[i] = await self._spawn()
            self._tasks.append(asyncio.create_task(self._watch(i), name=f"http-worker-{i}"))
        log.info("webmail workers started", workers=self.count, pids=self.pids)

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
            log.error("webmail worker ended; restarting", pid=proc.pid, status=status)
            await asyncio.sleep(RESTART_DELAY)
            if self._running():
                self.procs[i] = await self._spawn()

    async def stop(self) -> None:
        """SIGTERM to every worker (each finishes its requests), SIGKILL after
        :data:`STOP_GRACE` seconds."""
        self._stopping = True
        live = [p for p in self.procs if p is not None and p.returncode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in live:
            try:
                await asyncio.wait_for(p.wait(), STOP_GRACE)
            except TimeoutError:
                log.error("webmail worker did not stop; killed", pid=p.pid)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
