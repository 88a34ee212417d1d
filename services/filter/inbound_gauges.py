"""How much accepted mail waits for the store: the depth of MAIL_INBOUND and the age of
its oldest message, as Prometheus gauges (``postern_inbound_queue_depth``,
``postern_inbound_oldest_seconds``).

The filters report it rather than the store because the figure matters most while the
store is down and the stream buffers the mail (docs/architecture.md, invariant 5); with
several filter replicas every one reports the same figure (dashboards take ``max``).
MAIL_INBOUND has work-queue retention, so its message count is what the store has not
acked yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from mailcore import metrics
from mailcore.bus import names
from mailcore.bus.connect import Bus

INTERVAL = 10.0  # seconds between reads (one stream_info, one get_msg)


async def read_once(bus: Bus) -> tuple[int, float]:
    """Messages on MAIL_INBOUND and the age in seconds of the oldest (0: none)."""
    info = await bus.js.stream_info(names.STREAM_INBOUND)
    depth = int(info.state.messages or 0)
    oldest = 0.0
    if depth:
        raw = await bus.js.get_msg(names.STREAM_INBOUND, seq=info.state.first_seq)
        if raw.time is not None:
            oldest = max(0.0, time.time() - raw.time.timestamp())
    return depth, oldest


async def run(bus: Bus, stopping: asyncio.Event, interval: float = INTERVAL) -> None:
    while not stopping.is_set():
        with contextlib.suppress(Exception):  # the bus is away: keep the last figures
            depth, oldest = await read_once(bus)
            metrics.INBOUND_QUEUE_DEPTH.set(depth)
            metrics.INBOUND_OLDEST_SECONDS.set(oldest)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)


__all__ = ["INTERVAL", "read_once", "run"]
