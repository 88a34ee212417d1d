"""The store process's IMAP worker processes (issue 20, ``imap_workers`` > 1): started once
its own IMAP listeners are bound (the workers bind the same ports with SO_REUSEPORT),
restarted when one ends on its own, stopped (SIGTERM, then SIGKILL) before the store
closes. Each gets the key of the store's shared login cache (mailcore/logincache.py)
through a pipe it inherits, read once at its start. See services/store/imap_worker.py for
what a worker does.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mailcore.logging import get_logger
from mailcore.workers import Workers, child_env

log = get_logger("store")


class ImapWorkers(Workers):
    kind = "imap worker"
    stop_grace = 20.0  # each ends its sessions with BYE

    def __init__(
        self, count: int, *, lock_fd: int, ports: tuple[int, int], login_key: bytes
    ) -> None:
        super().__init__(count, log)
        self.lock_fd = lock_fd
        self.ports = ports
        self.login_key = login_key

    def _env(self) -> dict[str, str]:
        imap, imaps = self.ports
        return child_env(
            {
                "POSTERN_IMAP_PORT": str(imap),
                "POSTERN_IMAPS_PORT": str(imaps),
                # the store process's alone
                "POSTERN_POP3_PORT": "0",
                "POSTERN_POP3S_PORT": "0",
                "POSTERN_STORE_OPS_PORT": "0",
                "POSTERN_OPS_PORT": "0",
            }
        )

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
