"""The store's word that it took inbound mail (``postern.delivered``, synchronous
mirroring) carried to the peer's NATS, for filters that hand their mail to the peer.

A filter in synchronous mode (``POSTERN_HANDOFF_SYNC_TIMEOUT``, services/filter/delivered.py)
waits for the word on its own NATS before its 250. When that NATS is the slave's, the
mail reaches the master through this mirror's hand-off (handoff.py), and the master's
store says so on the master's NATS, where the filter does not listen: it waited out its
timeout and answered 250 without the word. While the hand-off runs, every notice the
store publishes here is published on the peer's NATS too, marked with the node it came
from; a marked notice is never carried again, so two sides that both think they are
master (a split) do not bounce notices back and forth.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mailcore.bus import names
from mailcore.logging import get_logger

log = get_logger("mirror.notices")


class DeliveredNotices:
    def __init__(self, local_nc: Any, peer_nc: Any, node: str) -> None:
        self.nc, self.peer_nc, self.node = local_nc, peer_nc, node
        self.carried = 0
        self._sub: Any = None

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self.nc.subscribe(names.SUBJECT_DELIVERED, cb=self._carry)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _carry(self, msg: Any) -> None:
        if names.HDR_RELAYED_FROM in (msg.headers or {}):
            return  # the peer's own word, carried here by its mirror
        try:
            await self.peer_nc.publish(
                names.SUBJECT_DELIVERED, msg.data, headers={names.HDR_RELAYED_FROM: self.node}
            )
        except Exception as exc:  # the peer's filters time out and answer 250 anyway
            log.warning("delivered notice not carried to the peer", error=str(exc))
        else:
            self.carried += 1


__all__ = ["DeliveredNotices"]
