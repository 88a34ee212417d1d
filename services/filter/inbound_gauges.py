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
import json
import time
from datetime import datetime

from mailcore import metrics
from mailcore.bus import names
from mailcore.bus.connect import Bus

INTERVAL = 10.0  # seconds between reads (one stream info request)


def _timestamp(rfc3339: str) -> float | None:
    """The server's ``first_ts`` (RFC 3339, nanoseconds) as a POSIX time; None when unset."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return None
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    stamp = head + ("." + frac[:6] if frac else "") + "+00:00"
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


async def read_once(bus: Bus) -> tuple[int, float]:
    """Messages on MAIL_INBOUND and the age in seconds of the oldest (0: none).

    From the stream's info alone (its ``first_ts``, which nats-py's StreamState leaves
    out): the filter's NATS user may not read inbound messages (mailcore.bus.permissions)."""
    reply = await bus.nc.request(f"$JS.API.STREAM.INFO.{names.STREAM_INBOUND}", b"", timeout=5)
    state = json.loads(reply.data).get("state") or {}
    depth = int(state.get("messages") or 0)
    oldest = 0.0
    first = _timestamp(str(state.get("first_ts") or ""))
    if depth and first is not None:
        oldest = max(0.0, time.time() - first)
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
