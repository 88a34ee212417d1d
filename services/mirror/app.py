"""The mirror service (``python -m services.mirror``): keeps a peer store live and identical.

It runs beside one store and talks to it by request/reply on that store's NATS
(``postern.replica.*``, services/store/replica_rpc.py). Two halves, both always running:

* the **source** (source.py) ships this store's journal to ``MIRROR_TO_<PEER>`` on the
  local NATS, so records queue durably while the peer is down;
* the **sink** (sink.py) connects to the peer's NATS (URL, credentials file, TLS) and
  applies the peer's queue ``MIRROR_TO_<THIS NODE>`` here, acking after each commit.

Beside them: the peer's directory and password-hash changes are followed and applied here
(mailcore/bus/mirror_directory.py), and on the master the scheduled repair pass runs
(repair.py). Counters go to Prometheus (mailcore.metrics) and to the KV bucket
``MIRROR_STATUS`` for ``mailctl mirror status``. See docs/mirror.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict
from typing import Any

from mailcore import metrics
from mailcore.bus import mirror as queue
from mailcore.bus import mirror_directory as directory_sync
from mailcore.bus import roles
from mailcore.bus.mirror_resync import StoreLink
from mailcore.config import MirrorSettings
from mailcore.logging import get_logger
from mailcore.service import ServiceContext
from services.mirror import followers, repair
from services.mirror.handoff import Handoff
from services.mirror.notices import DeliveredNotices
from services.mirror.outage import Outage
from services.mirror.peerlink import PeerLink
from services.mirror.sink import Sink
from services.mirror.source import Source

log = get_logger("mirror")

STORE_CAP = 2.0  # the longest pause between tries at the local store (a cheap request)
QUEUE_CAP = 5.0  # … at the peer's queue while its NATS answers (its mirror not running)


class Mirror:
    def __init__(self, s: MirrorSettings, nc: Any, js: Any) -> None:
        self.s = s
        self.nc, self.js = nc, js
        self.source = Source(nc, js, s.mirror_peer)
        self.sink: Sink | None = None
        self.link = PeerLink(s)
        self.peer_nc: Any = None
        self.handoff: Handoff | None = None
        self.notices: DeliveredNotices | None = None  # with the hand-off (notices.py)
        self.role: roles.RoleRecord | None = None
        self.peer_role: roles.RoleRecord | None = None
        self.nudged = asyncio.Event()  # a synchronous write waits (followers.Nudge)
        # one warning line per outage, with backoff (outage.py); behind the peer link,
        # quiet while the link is down: its own line says so (peerlink.py)
        peer = s.mirror_peer
        behind_link = lambda: not self.link.up  # noqa: E731
        self.source_outage = Outage(
            "journal not shipped: the local store or NATS is not answering",
            "journal shipped again",
            cap=STORE_CAP,
            peer=peer,
        )
        self.sink_outage = Outage(
            f"the peer's queue MIRROR_TO_{s.mirror_node.upper()} not applied",
            "the peer's queue applied again",
            cap=QUEUE_CAP,
            quiet=behind_link,
            peer=peer,
        )
        self.roles_outage = Outage(
            "mirror roles not read", "mirror roles read again", quiet=behind_link, peer=peer
        )
        self.directory_outages = {
            bucket: Outage(
                f"the peer's {bucket} bucket not followed",
                f"the peer's {bucket} bucket followed again",
                quiet=behind_link,
                peer=peer,
            )
            for bucket in directory_sync.BUCKETS
        }

    async def run_source(self, stopping: asyncio.Event) -> None:
        declared = False
        while not stopping.is_set():
            try:
                if not declared:  # e.g. refused while JetStream lacks the room for it
                    await queue.declare(self.js, self.s.mirror_peer, self.s.mirror_stream_max_bytes)
                    declared = True
                if self.s.mirror_follower:  # read-only follower: nothing goes back to the peer
                    return
                # every account each poll interval, else those the store named
                sent = await self.source.pass_due(self.s.mirror_poll_interval)
            except Exception as exc:
                self.source.failed(exc)
                await _pause(stopping, self.source_outage.failed(exc))
                continue
            self.source_outage.ok()
            if not sent:
                await followers.idle(stopping, self.nudged, self.s.mirror_poll_interval)

    async def run_sink(self, stopping: asyncio.Event) -> None:
        if not self.s.peer_nats_url:
            log.warning("no peer NATS URL: records are queued for the peer, none applied")
            return
        self.peer_nc = await self.link.connect(stopping)  # with backoff, reported once
        if self.peer_nc is None:
            return
        while not stopping.is_set() and self.sink is None:
            try:
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
                self.sink = sink
            except Exception as exc:
                await self._after(stopping, self.sink_outage.failed(exc))
        try:
            while not stopping.is_set() and self.sink is not None:
                try:
                    await self.sink.pass_once()
                except Exception as exc:
                    self.sink.failed(exc)
                    await self._after(stopping, self.sink_outage.failed(exc))
                    continue
                self.sink_outage.ok()
        finally:
            if self.sink is not None:
                await self.sink.stop()  # the batch fetched ahead goes back to the queue

    async def _after(self, stopping: asyncio.Event, delay: float) -> None:
        """Wait ``delay`` after a failure; while the peer link is down, until it is back."""
        await _pause(stopping, delay)
        while not stopping.is_set() and self.peer_nc is not None and not self.link.up:
            await _pause(stopping, 0.2)

    async def run_roles(self, stopping: asyncio.Event) -> None:
        """Roles (mailcore.bus.roles): take the peer's newer promote, and while this
        store is master move the peer's inbound mail here (handoff.py)."""
        while not stopping.is_set():
            moved = 0
            try:
                moved = await self._roles_once()
            except Exception as exc:
                await self._drop_handoff()
                await self._after(stopping, self.roles_outage.failed(exc))
                continue
            self.roles_outage.ok()
            if not moved:
                await _pause(stopping, 0.5)

    async def _roles_once(self) -> int:
        self.role = await roles.read(self.js)
        linked = self.sink is not None and self.peer_nc is not None and self.peer_nc.is_connected
        if not linked or self.role is None:
            return 0
        peer_js = self.peer_nc.jetstream()
        self.peer_role = await roles.read(peer_js)
        newer = roles.reconcile(self.role, self.peer_role)
        if newer is not None:
            log.warning(
                "the peer was promoted while this side was away: taking the other role",
                role=newer.role,
                epoch=newer.epoch,
            )
            self.role = await roles.write(self.js, newer.role, newer.epoch, newer.node)
        if self.role.role != roles.MASTER:
            await self._drop_handoff()
            return 0
        if self.handoff is None:
            self.handoff = Handoff(self.js, peer_js)
            self.notices = DeliveredNotices(self.nc, self.peer_nc, self.s.mirror_node)
            await self.notices.start()
        return await self.handoff.pass_once()

    async def _drop_handoff(self) -> None:
        if self.handoff is not None:
            await self.handoff.close()
            self.handoff = None
        if self.notices is not None:
            await self.notices.close()
            self.notices = None

    async def _peer_ready(self, stopping: asyncio.Event) -> bool:
        while not stopping.is_set() and (self.sink is None or self.peer_nc is None):
            await _pause(stopping, 0.5)
        return not stopping.is_set()

    async def run_directory(self, stopping: asyncio.Event) -> None:
        """The peer's directory and password-hash changes, applied here (directory_sync.py):
        a user made or changed on either store logs in on both, after a failover too."""
        if not self.s.peer_nats_url or not await self._peer_ready(stopping):
            return
        await asyncio.gather(
            *(self._follow_bucket(bucket, stopping) for bucket in directory_sync.BUCKETS)
        )

    async def _follow_bucket(self, bucket: str, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await directory_sync.follow(
                    self.js, self.peer_nc.jetstream(), self.s.mirror_peer, stopping, bucket
                )
            except Exception as exc:
                await self._after(stopping, self.directory_outages[bucket].failed(exc))
            else:
                self.directory_outages[bucket].ok()

    async def run_repair(self, stopping: asyncio.Event) -> None:
        """The scheduled repair pass (repair.py), on the master: the roles are read
        afresh before each look, so a promote moves the pass to the new master."""
        s = self.s
        interval = s.mirror_repair_interval
        if not s.peer_nats_url or interval <= 0 or not await self._peer_ready(stopping):
            return
        while not stopping.is_set():
            await _pause(stopping, repair.check_every(interval))
            if self.peer_nc is None or not self.peer_nc.is_connected:
                continue  # the peer link's own line says so (run_sink)
            try:
                peer_js = self.peer_nc.jetstream()
                own, theirs = await roles.read(self.js), await roles.read(peer_js)
                if not repair.runs_here(s.mirror_node, s.mirror_peer, own, theirs):
                    await repair.note_not_here(self.js, s.mirror_peer, repair.not_here_note(own))
                    continue
                local = StoreLink(self.nc, self.js, s.mirror_node)
                peer = StoreLink(self.peer_nc, peer_js, s.mirror_peer)
                await repair.maybe_run(local, peer, s.mirror_node, s.mirror_peer, interval)
            except Exception as exc:
                log.warning("mirror repair pass failed, retrying", error=repr(exc)[:300])

    def status(self) -> dict[str, Any]:
        sink = asdict(self.sink.stats) if self.sink else {}
        link = self.link.outage
        errors = [
            (self.source.stats.last_error_at or 0, self.source.stats.last_error),
            (sink.get("last_error_at") or 0, sink.get("last_error")),
            (time.time() if link.going_on else 0, f"peer link: {link.last_error}"),
            (time.time() if self.roles_outage.going_on else 0, self.roles_outage.last_error),
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
            "role": self.role.role if self.role else None,
            "epoch": self.role.epoch if self.role else None,
            "peer_role": self.peer_role.role if self.peer_role else None,
            "peer_epoch": self.peer_role.epoch if self.peer_role else None,
            "forwarded": self.handoff.stats.forwarded if self.handoff else 0,
            "idle_since": self.source.stats.idle_since,
            "peer_link": self.sink is not None and self.link.up,
            "peer_down_since": link.since,  # the peer unreachable since (None: it is not)
            "peer_retries": link.failures,
            "last_error": last[1],
            "at": time.time(),
        }

    async def report(self, stopping: asyncio.Event) -> None:
        peer = self.s.mirror_peer
        while not stopping.is_set():
            if self.s.peer_nats_url:
                metrics.MIRROR_PEER_UP.labels(peer=peer).set(1 if self.link.up else 0)
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
    nudge.sources.append(mirror.source)  # the store's change notices (followers' too)
    ctx.on_cleanup((await nudge.subscribe_changed(bus.nc)).unsubscribe)
    # /healthz (liveness, compose's health check): this side — its NATS ("nats", from
    # connect_bus) and its store answering. The peer's link is readiness only (/readyz):
    # a peer outage is what the mirror is there for (it queues durably meanwhile), so it
    # must not mark this side unhealthy, nor hold back what depends on it.
    ctx.ops.add_check("store", lambda: not mirror.source_outage.going_on)
    if ctx.settings.peer_nats_url:
        ctx.ops.add_check("peer", lambda: mirror.link.up, liveness=False)
    tasks = [
        asyncio.create_task(mirror.run_source(ctx.stopping), name="mirror-source"),
        asyncio.create_task(mirror.run_sink(ctx.stopping), name="mirror-sink"),
        asyncio.create_task(mirror.report(ctx.stopping), name="mirror-status"),
        asyncio.create_task(mirror.run_roles(ctx.stopping), name="mirror-roles"),
        asyncio.create_task(mirror.run_directory(ctx.stopping), name="mirror-directory"),
        asyncio.create_task(mirror.run_repair(ctx.stopping), name="mirror-repair"),
        *followers.tasks(ctx.settings, bus.nc, bus.js, nudge, ctx.stopping),
    ]
    log.info("mirror running", node=ctx.settings.mirror_node, peer=ctx.settings.mirror_peer)
    await ctx.stopping.wait()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)
    await mirror.link.close()
