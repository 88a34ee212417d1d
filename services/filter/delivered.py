"""Synchronous mirroring on the SMTP side (``POSTERN_HANDOFF_SYNC_TIMEOUT``): the 250 for
mail to local recipients waits until the store has taken it — a store in synchronous mode
(services/store/mirror_sync.py) acks a delivery only once its mirror peer committed it too,
and then says so on ``postern.delivered`` (``{"ids": [...]}``, names.SUBJECT_DELIVERED).
So a 250 means both stores have the message: a kill -9 of the whole master side right
after it loses nothing (docs/mirror.md).

When the word does not come in time (the store or its peer down, the store not in
synchronous mode) the 250 goes out anyway: the bus has the message durably already (the
PubAck, architecture invariant 1); logged and counted in
``postern_handoff_sync_timeouts_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from mailcore import metrics
from mailcore.bus import names
from mailcore.logging import get_logger

log = get_logger("filter.handoff")


class DeliveredWaiter:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._sub: Any = None

    async def start(self, nc: Any) -> None:
        self._sub = await nc.subscribe(names.SUBJECT_DELIVERED, cb=self._on_delivered)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_delivered(self, msg: Any) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            for mail_id in json.loads(msg.data)["ids"]:
                fut = self._waiting.get(str(mail_id))
                if fut is not None and not fut.done():
                    fut.set_result(None)

    def expect(self, mail_id: str) -> asyncio.Future[None]:
        """Before the publish: the word may come before the PubAck is read."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[mail_id] = fut
        return fut

    def forget(self, mail_id: str) -> None:
        self._waiting.pop(mail_id, None)

    async def wait(self, mail_id: str, fut: asyncio.Future[None]) -> bool:
        """Until the store's word on ``mail_id`` (True), or the timeout (False)."""
        try:
            await asyncio.wait_for(fut, self.timeout)
            return True
        except TimeoutError:
            metrics.HANDOFF_SYNC_TIMEOUTS.inc()
            log.warning(
                "no word of synchronous delivery: answering 250 without it",
                id=mail_id,
                timeout=self.timeout,
            )
            return False
        finally:
            self.forget(mail_id)


__all__ = ["DeliveredWaiter"]
