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
import os
import sys

from mailcore.logging import get_logger
from mailcore.workers import Workers, child_env

log = get_logger("webmail")

AUTO_MAX = 4  # processes when webmail_workers is 0 (one per core, at most this many)


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


class HttpWorkers(Workers):
    kind = "webmail worker"
    stop_grace = 15.0  # each finishes its requests

    def __init__(self, count: int, *, port: int) -> None:
        super().__init__(count, log)
        self.port = port

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = child_env(
            {
                "POSTERN_HTTP_PORT": str(self.port),  # the port the service process bound
                "POSTERN_WEBMAIL_OPS_PORT": "0",  # the service process's alone
                "POSTERN_OPS_PORT": "0",
            }
        )
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.webmail.worker",
            "--parent",
            str(os.getpid()),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
        )
