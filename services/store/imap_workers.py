"""The store process's IMAP worker processes (issue 20, ``imap_workers`` > 1): started once
its own IMAP listeners are bound (the workers bind the same ports with SO_REUSEPORT),
restarted when one ends on its own, stopped (SIGTERM, then SIGKILL) before the store
closes. Each gets the key of the store's shared login cache (mailcore/logincache.py)
through a pipe it inherits, read once at its start. See services/store/imap_worker.py for
what a worker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from mailcore.logging import get_logger

log = get_logger("store")

ROOT = Path(__file__).resolve().parents[2]
RESTART_DELAY = 1.0  # seconds before a worker that ended is started again
STOP_GRACE = 20.0  # seconds a worker has to stop after SIGTERM


class ImapWorkers:
    def __init__(
        self, count: int, *, lock_fd: int, ports: tuple[int, int], login_key: bytes
    ) -> None:
        self.count = count
        self.lock_fd = lock_fd
        self.ports = ports
        self.login_key = login_key
        self.procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def _env(self) -> dict[str, str]:
        imap, imaps = self.ports
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "POSTERN_IMAP_PORT": str(imap),
            "POSTERN_IMAPS_PORT": str(imaps),
            # the store process's alone
            "POSTERN_POP3_PORT": "0",
            "POSTERN_POP3S_PORT": "0",
            "POSTERN_STORE_OPS_PORT": "0",
            "POSTERN_OPS_PORT": "0",
        }

    async def _spawn(self) -> asyncio.subprocess.Process:
        key_fd, w = os.pipe()
        try:
            os.write(w, self.login_key)  # 32 bytes: the pipe's buffer holds them
        finally:
            os.close(w)
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.store.imap_worker",
                "--lock-fd",
                str(self.lock_fd),
                "--login-key-fd",
                str(key_fd),
                "--parent",
                str(os.getpid()),
                env=self._env(),
                pass_fds=(self.lock_fd, key_fd),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            os.close(key_fd)

    async def start(self) -> None:
        for i in range(self.count):
            self.procs[i] = await self._spawn()
            self._tasks.append(asyncio.create_task(self._watch(i), name=f"imap-worker-{i}"))
        log.info("imap workers started", workers=self.count, pids=self.pids)

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
            log.error("imap worker ended; restarting", pid=proc.pid, status=status)
            await asyncio.sleep(RESTART_DELAY)
            if self._running():
                self.procs[i] = await self._spawn()

    async def stop(self) -> None:
        """SIGTERM to every worker (each ends its sessions with BYE), SIGKILL after
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
                log.error("imap worker did not stop; killed", pid=p.pid)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
