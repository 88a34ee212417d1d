"""The mirror service (``python -m services.mirror``): keeps a peer store live and identical.

It runs beside one store and talks to it by request/reply on that store's NATS
(``postern.replica.*``, services/store/replica_rpc.py). Two halves, both always running:

* the **source** (source.py) ships this store's journal to ``MIRROR_TO_<PEER>`` on the
  local NATS, so records queue durably while the peer is down;
* the **sink** (sink.py) connects to the peer's NATS (URL, credentials file, TLS) and
  applies the peer's queue ``MIRROR_TO_<THIS NODE>`` here, acking after each commit.

Counters go to Prometheus (mailcore.metrics) and to the KV bucket ``MIRROR_STATUS`` for
``mailctl mirror status``. See docs/mirror.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import asdict
from typing import Any

import nats

from mailcore import metrics
from mailcore.bus import mirror as queue
from mailcore.config import MirrorSettings
from mailcore.logging import get_logger
from mailcore.service import ServiceContext
from services.mirror import followers
from services.mirror.sink import Sink
from services.mirror.source import Source

log = get_logger("mirror")

BACKOFF = 1.0  # seconds after a failure before trying again


def peer_tls(s: MirrorSettings) -> ssl.SSLContext | None:
    if s.peer_tls_ca is None and s.peer_tls_cert is None:
        return None
    ctx = ssl.create_default_context(cafile=str(s.peer_tls_ca) if s.peer_tls_ca else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if s.peer_tls_cert is not None:
        ctx.load_cert_chain(str(s.peer_tls_cert), str(s.peer_tls_key) if s.peer_tls_key else None)
    return ctx


async def connect_peer(s: MirrorSettings) -> Any:
    """The link to the peer's NATS; nats-py reconnects forever once connected."""
    options: dict[str, Any] = {
        "servers": [s.peer_nats_url],
        "name": f"postern-mirror-{s.mirror_node}",
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "connect_timeout": 2,
    }
    if s.peer_nats_creds is not None:
        options["user_credentials"] = str(s.peer_nats_creds)
    if s.peer_nats_user is not None:
        options["user"], options["password"] = s.peer_nats_user, s.peer_nats_password
    tls = peer_tls(s)
    if tls is not None:
        options["tls"] = tls
    return await nats.connect(**options)


class Mirror:
    def __init__(self, s: MirrorSettings, nc: Any, js: Any) -> None:
        self.s = s
        self.nc, self.js = nc, js
        self.source = Source(nc, js, s.mirror_peer)
        self.sink: Sink | None = None
        self.peer_nc: Any = None
        self.link_error: str | None = None
        self.nudged = asyncio.Event()  # a synchronous write waits (followers.Nudge)

    async def run_source(self, stopping: asyncio.Event) -> None:
        await queue.declare(self.js, self.s.mirror_peer, self.s.mirror_stream_max_bytes)
        if self.s.mirror_follower:  # read-only follower: nothing goes back to the peer
            return
        while not stopping.is_set():
            try:
                sent = await self.source.pass_once()
            except Exception as exc:
                self.source.failed(exc)
                log.warning("mirror source failed, retrying", error=self.source.stats.last_error)
                sent = 0
                await _pause(stopping, BACKOFF)
            if not sent:
                await followers.idle(stopping, self.nudged, self.s.mirror_poll_interval)

    async def run_sink(self, stopping: asyncio.Event) -> None:
        if not self.s.peer_nats_url:
            log.warning("no peer NATS URL: records are queued for the peer, none applied")
            return
        while not stopping.is_set() and self.sink is None:
            try:
                self.peer_nc = await connect_peer(self.s)
                sink = Sink(
                    self.nc,
                    self.js,
                    self.peer_nc.jetstream(),
                    self.s.mirror_node,
                    self.s.mirror_peer,
                    peer_nc=self.peer_nc,
                    settle=not self.s.mirror_follower,
                    trash=self.s.mirror_trash,
                )
                await sink.start()
                self.sink, self.link_error = sink, None
            except Exception as exc:
                self.link_error = f"peer link: {type(exc).__name__}: {exc}"[:300]
                if self.peer_nc is not None:
                    with contextlib.suppress(Exception):
                        await self.peer_nc.close()
                    self.peer_nc = None
                await _pause(stopping, BACKOFF)
        while not stopping.is_set() and self.sink is not None:
            try:
                await self.sink.pass_once()
            except Exception as exc:
                self.sink.failed(exc)
                log.warning("mirror sink failed, retrying", error=self.sink.stats.last_error)
                await _pause(stopping, BACKOFF)

    def status(self) -> dict[str, Any]:
        sink = asdict(self.sink.stats) if self.sink else {}
        errors = [
            (self.source.stats.last_error_at or 0, self.source.stats.last_error),
            (sink.get("last_error_at") or 0, sink.get("last_error")),
            (time.time() if self.link_error else 0, self.link_error),
        ]
        last = max(errors, key=lambda e: e[0])
        return {
            "node": self.s.mirror_node,
            "peer": self.s.mirror_peer,
            "added": self.source.stats.added,
            "sent": self.source.stats.sent,
            "applied": sink.get("applied", 0),
            "duplicates": sink.get("duplicates", 0),
            "conflicts": sink.get("conflicts", 0),
            "resolved": sink.get("resolved", 0),
            "resync_accounts": self.source.stats.resync,
            "peer_link": self.sink is not None and bool(self.peer_nc and self.peer_nc.is_connected),
            "last_error": last[1],
            "at": time.time(),
        }

    async def report(self, stopping: asyncio.Event) -> None:
        peer = self.s.mirror_peer
        while not stopping.is_set():
            with contextlib.suppress(Exception):
                queued, lag = await queue.queue(self.js, peer)
                metrics.MIRROR_QUEUED.labels(peer=peer).set(queued)
                metrics.MIRROR_LAG.labels(peer=peer).set(lag)
                await queue.write_status(self.js, peer, self.status())
            await _pause(stopping, 1.0)


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def serve(ctx: ServiceContext[MirrorSettings]) -> None:
    bus = await ctx.connect_bus()
    mirror = Mirror(ctx.settings, bus.nc, bus.js)
    nudge = followers.Nudge()
    nudge.events.append(mirror.nudged)
    ctx.on_cleanup((await nudge.subscribe(bus.nc)).unsubscribe)
    tasks = [
        asyncio.create_task(mirror.run_source(ctx.stopping), name="mirror-source"),
        asyncio.create_task(mirror.run_sink(ctx.stopping), name="mirror-sink"),
        asyncio.create_task(mirror.report(ctx.stopping), name="mirror-status"),
        *followers.tasks(ctx.settings, bus.nc, bus.js, nudge, ctx.stopping),
    ]
    log.info("mirror running", node=ctx.settings.mirror_node, peer=ctx.settings.mirror_peer)
    await ctx.stopping.wait()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)
    if mirror.peer_nc is not None:
        with contextlib.suppress(Exception):
            await mirror.peer_nc.close()
