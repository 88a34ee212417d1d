"""``mailctl up``'s watch over its nats-server: JetStream that stopped storing is brought
back once the disk has room again.

When the disk under JetStream fills, nats-server logs "JetStream out of File resources,
will be DISABLED" and switches JetStream off; a stream whose block write failed may also go
on refusing writes after space is freed. Neither mends itself: mail would get 451 until
someone restarts nats-server. NATS's own remedy for a disabled JetStream is a reload
(SIGHUP re-enables it, nats-server PR #1997); a restart recovers a stuck stream too. So,
every ``interval`` seconds, a write probe (mailcore.bus.probe); after ``grace`` seconds of
failures *with room on the disk again* (``min_free`` bytes), a SIGHUP; if the probe still
fails ``grace`` seconds later, a restart (the supervisor starts nats-server again; the
JetStream store is recovered from disk, nothing acknowledged is lost).

Only after the disk was seen short of room (less than ``min_free``): a write probe also
fails, for seconds, while a cluster's streams elect new leaders (compose's ``ha``: a node
died). Reloading or restarting a surviving node then takes one more vote away; both
survivors' watches did, in turn, and the cluster never held a quorum again (no mail
accepted until someone stopped the watches).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.js import JetStreamContext

from mailcore.bus.probe import can_store
from mailcore.logging import get_logger

log = get_logger("natswatch")

INTERVAL = 1.0
GRACE = 3.0
MIN_FREE = 32 * 1024**2


def _free(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class NatsWatch:
    def __init__(
        self,
        js: JetStreamContext,
        store_dir: Path,
        *,
        pid: Callable[[], int | None],
        restart: Callable[[], Awaitable[None]],
        echo: Callable[[str], None] = lambda line: None,
        interval: float = INTERVAL,
        grace: float = GRACE,
        min_free: int = MIN_FREE,
    ) -> None:
        self.js = js
        self.store_dir = store_dir
        self.pid = pid
        self.restart = restart
        self.echo = echo
        self.interval = interval
        self.grace = grace
        self.min_free = min_free
        self.reloads = 0
        self.restarts = 0

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        reloaded_at: float | None = None
        was_short = False  # the disk was seen short of room, and nothing stored since
        while not stopping.is_set():
            ok = await can_store(self.js, timeout=max(1.0, self.interval))
            now = loop.time()
            room = _free(self.store_dir) >= self.min_free
            was_short = (was_short or not room) and not (ok and room)
            if ok:
                if failing_since is not None:
                    self.echo("JetStream stores again")
                failing_since = reloaded_at = None
            elif failing_since is None:
                failing_since = now
                self.echo("!! JetStream stores nothing (disk full?): mail gets 451 meanwhile")
            elif now - failing_since >= self.grace and room and was_short:
                if reloaded_at is None:
                    self._reload()
                    reloaded_at = now
                elif now - reloaded_at >= self.grace:
                    self.echo("!! JetStream still stores nothing: restarting nats-server")
                    self.restarts += 1
                    await self.restart()
                    failing_since = reloaded_at = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)

    def _reload(self) -> None:
        """SIGHUP: nats-server reloads its configuration and re-enables JetStream."""
        pid = self.pid()
        if pid is None:
            return
        self.echo("!! disk has room again: asking nats-server to re-enable JetStream (SIGHUP)")
        self.reloads += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
