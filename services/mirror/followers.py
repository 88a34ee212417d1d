"""Read-only followers (SurgeMail's ``others``): more stores fed from this store's journal.

Each follower named in ``POSTERN_MIRROR_FOLLOWERS`` gets what the peer gets, on its own:
the journal reader ``mirror:<follower>`` (its own position), the queue
``MIRROR_TO_<FOLLOWER>`` on this store's NATS (its own lag), and its own status line
(``mailctl mirror status --peer <follower>``). Nothing is left out for a follower: it
writes nothing itself (its mirror runs with ``POSTERN_MIRROR_FOLLOWER=true``: it applies
this store's queue and ships nothing back), so it holds exactly what this store holds —
including what this store applied from its peer and every split-brain resolution.

A store in synchronous mode (services/store/mirror_sync.py) waits for its peer only; a
follower's commits are reported but not waited for.
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
from mailcore.config import MirrorSettings
from mailcore.logging import get_logger
from services.mirror.outage import Outage
from services.mirror.source import Source

log = get_logger("mirror")

BACKOFF_CAP = 2.0  # the longest pause between tries at the local store


def follower_names(s: MirrorSettings) -> list[str]:
    return [n.strip() for n in s.mirror_followers.split(",") if n.strip()]


class Nudge:
    """The store's ``postern.mirror.nudge`` (a synchronous write is waiting): every
    source reads its journal at once instead of at the next poll."""

    def __init__(self) -> None:
        self.events: list[asyncio.Event] = []
        self.sources: list[Source] = []  # told of the store's change notices

    async def subscribe_changed(self, nc: Any) -> Any:
        """The store's ``postern.mirror.changed`` (services/store/mirror_changed.py): every
        source reads the accounts named at once."""

        async def on_changed(msg: Any) -> None:
            with contextlib.suppress(ValueError, TypeError):
                accounts = json.loads(msg.data)
                if isinstance(accounts, list):
                    for source in self.sources:
                        source.on_changed([str(a) for a in accounts])
                    for event in self.events:
                        event.set()

        return await nc.subscribe(names.SUBJECT_MIRROR_CHANGED, cb=on_changed)

    async def subscribe(self, nc: Any) -> Any:
        async def on_nudge(msg: Any) -> None:
            for event in self.events:
                event.set()

        return await nc.subscribe(names.SUBJECT_MIRROR_NUDGE, cb=on_nudge)

    def event(self) -> asyncio.Event:
        event = asyncio.Event()
        self.events.append(event)
        return event


async def idle(stopping: asyncio.Event, nudged: asyncio.Event, seconds: float) -> None:
    """Until ``seconds`` pass, the service stops or a nudge comes."""
    waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(nudged.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    nudged.clear()


async def ship_forever(
    s: MirrorSettings, js: Any, source: Source, stopping: asyncio.Event, nudged: asyncio.Event
) -> None:
    """One target's source loop: journal → ``MIRROR_TO_<TARGET>``."""
    await queue.declare(js, source.peer, s.mirror_stream_max_bytes)
    outage = Outage(  # one line per outage, with backoff (outage.py)
        f"journal not shipped to follower {source.peer}: the local store or NATS is not answering",
        f"journal shipped to follower {source.peer} again",
        cap=BACKOFF_CAP,
        peer=source.peer,
    )
    while not stopping.is_set():
        try:
            sent = await source.pass_due(s.mirror_poll_interval)
        except Exception as exc:
            source.failed(exc)
            await idle(stopping, asyncio.Event(), outage.failed(exc))
            continue
        outage.ok()
        if not sent:
            await idle(stopping, nudged, s.mirror_poll_interval)


def status_of(s: MirrorSettings, source: Source) -> dict[str, Any]:
    return {
        "node": s.mirror_node,
        "peer": source.peer,
        "follower": True,
        "added": source.stats.added,
        "sent": source.stats.sent,
        "resync_accounts": source.stats.resync,
        "last_error": source.stats.last_error,
        "at": time.time(),
    }


async def report_forever(
    s: MirrorSettings, js: Any, sources: list[Source], stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        for source in sources:
            with contextlib.suppress(Exception):
                queued, lag = await queue.queue(js, source.peer)
                metrics.MIRROR_QUEUED.labels(peer=source.peer).set(queued)
                metrics.MIRROR_LAG.labels(peer=source.peer).set(lag)
                await queue.write_status(js, source.peer, status_of(s, source))
        await idle(stopping, asyncio.Event(), 1.0)


def tasks(
    s: MirrorSettings, nc: Any, js: Any, nudge: Nudge, stopping: asyncio.Event
) -> list[asyncio.Task[None]]:
    """The followers' source loops and their status reports."""
    sources = [Source(nc, js, name) for name in follower_names(s)]
    if not sources:
        return []
    nudge.sources.extend(sources)
    log.info("feeding read-only followers", followers=[x.peer for x in sources])
    out = [
        asyncio.create_task(
            ship_forever(s, js, src, stopping, nudge.event()), name=f"mirror-follower-{src.peer}"
        )
        for src in sources
    ]
    out.append(
        asyncio.create_task(report_forever(s, js, sources, stopping), name="mirror-followers")
    )
    return out


__all__ = ["Nudge", "follower_names", "idle", "ship_forever", "tasks"]
