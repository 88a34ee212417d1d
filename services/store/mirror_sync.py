"""Synchronous mirroring (``POSTERN_MIRROR_SYNC_PEER``): a delivery is acked to the bus,
and an IMAP write answered OK, only once the peer has committed it too.

The peer's mirror (services/mirror/sink.py), after committing a batch of this store's
records, publishes on this store's NATS ``postern.mirror.committed`` ``{node, account,
seq}``: every record of ``account`` up to ``seq`` is committed there. After a local
commit the store waits until that covers its newest own record of the account (records
applied *from* the peer are never shipped back, so they are not waited for), and nudges
its mirror's source (``postern.mirror.nudge``) so the record leaves at once. After
``POSTERN_MIRROR_SYNC_TIMEOUT`` seconds without it, the reply goes out anyway
(asynchronous from then on for that write): logged, counted in
``postern_mirror_sync_timeouts_total``, ``postern_mirror_sync_degraded`` = 1 and
``mailctl mirror status`` says ``DEGRADED`` until a wait succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from mailcore import metrics
from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.config import StoreSettings
from mailcore.logging import get_logger
from mailcore.mailstore import Account
from mailcore.service import ServiceContext

log = get_logger("mirror-sync")


class MirrorSync:
    def __init__(self, nc: Any, js: Any, peer: str, timeout: float) -> None:
        self.nc, self.js, self.peer, self.timeout = nc, js, peer, timeout
        self.committed: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self.degraded_since: float | None = None
        self.timeouts = 0
        self.waits = 0
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(names.SUBJECT_MIRROR_COMMITTED, cb=self._on_committed)
        metrics.MIRROR_SYNC_DEGRADED.labels(peer=self.peer).set(0)
        await self._report()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_committed(self, msg: Any) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            note = json.loads(msg.data)
            if note["node"] != self.peer:
                return  # a follower's commit does not make a write synchronous
            account, seq = str(note["account"]), int(note["seq"])
            self.committed[account] = max(self.committed.get(account, 0), seq)
            waiting = self._waiters.get(account, [])
            for target, fut in [w for w in waiting if w[0] <= seq]:
                waiting.remove((target, fut))
                if not fut.done():
                    fut.set_result(None)

    async def wait(self, acct: Account, after: int = 0) -> bool:
        """Until the peer committed ``acct``'s newest own record (none newer than
        ``after``: nothing to wait for); False: timed out."""
        target = await acct.replication.last_own()
        if target <= after or self.committed.get(acct.id, 0) >= target:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(acct.id, []).append((target, fut))
        with contextlib.suppress(Exception):
            await self.nc.publish(names.SUBJECT_MIRROR_NUDGE, b"")
        self.waits += 1
        try:
            await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            with contextlib.suppress(ValueError):
                self._waiters[acct.id].remove((target, fut))
            await self._timed_out(acct.id)
            return False
        if self.degraded_since is not None:
            self.degraded_since = None
            metrics.MIRROR_SYNC_DEGRADED.labels(peer=self.peer).set(0)
            log.info("synchronous mirroring again", peer=self.peer)
            await self._report()
        return True

    async def _timed_out(self, account: str) -> None:
        self.timeouts += 1
        metrics.MIRROR_SYNC_TIMEOUTS.labels(peer=self.peer).inc()
        if self.degraded_since is None:
            self.degraded_since = time.time()
            metrics.MIRROR_SYNC_DEGRADED.labels(peer=self.peer).set(1)
            log.warning(
                "synchronous mirror timed out: answering asynchronously",
                peer=self.peer,
                account=account,
                timeout=self.timeout,
            )
        await self._report()

    async def _report(self) -> None:
        with contextlib.suppress(Exception):
            await queue.write_status(
                self.js,
                f"sync-{self.peer}",
                {
                    "peer": self.peer,
                    "timeout": self.timeout,
                    "degraded_since": self.degraded_since,
                    "timeouts": self.timeouts,
                    "at": time.time(),
                },
            )


async def start(ctx: ServiceContext[StoreSettings], nc: Any, js: Any) -> MirrorSync | None:
    """The synchronous mirror wait of a store process or an IMAP worker process (each
    waits for its own writes), stopped with the process; None when not configured."""
    s = ctx.settings
    if not s.mirror_sync_peer:
        return None
    sync = MirrorSync(nc, js, s.mirror_sync_peer, s.mirror_sync_timeout)
    await sync.start()
    ctx.on_cleanup(sync.stop)
    return sync


__all__ = ["MirrorSync", "start"]
