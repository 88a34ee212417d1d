"""The relay service: a process beside every filter node (``mailctl up`` starts one with
the filter; compose runs one per filter replica). It needs no store: the directory (local
domains, DKIM keys) and the queue come from NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from nats.js.kv import KeyValue

from mailcore import metrics
from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.bus.settlement import QueueSettler
from mailcore.config import RelaySettings
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.service import ServiceContext
from services.filter.relay.attempt import Dispatcher, Policy
from services.filter.relay.notify import Notifier
from services.filter.relay.routes import MxLookup, Router, dns_mx
from services.filter.relay.sessions import SessionPool
from services.filter.relay.signing import Signer
from services.filter.relay.transaction import Transactor
from services.filter.relay.worker import RelayWorker

log = get_logger("relay")

GAUGE_INTERVAL = 10.0


class RelayNode:
    """Everything one relay process runs; ``serve`` and the tests start it the same way."""

    def __init__(self, settings: RelaySettings, bus: Bus, *, lookup: MxLookup = dns_mx) -> None:
        self.settings = settings
        self.bus = bus
        self.lookup = lookup
        self.directory: Directory | None = None
        self.worker: RelayWorker | None = None
        self.state_kv: KeyValue | None = None
        self.pool = SessionPool(per_destination=settings.relay_destination_concurrency)

    async def start(self) -> RelayWorker:
        s, js = self.settings, self.bus.js
        self.directory = await Directory.open(js)
        self.bus.on_reconnect(self.directory.restart_watch)
        self.state_kv = await js.key_value(names.KV_RELAY)
        directory_kv = await js.key_value(names.KV_DIRECTORY)
        bodies = await js.object_store(names.OBJ_BODIES)
        router = Router(
            routes=s.relay_routes,
            mx_port=s.relay_mx_port,
            smarthost=s.relay_smarthost,
            smarthost_tls=s.relay_smarthost_tls,
            smarthost_user=s.relay_smarthost_user,
            smarthost_password=s.relay_smarthost_password,
            smarthost_ca=str(s.relay_smarthost_ca) if s.relay_smarthost_ca else None,
            lookup=self.lookup,
        )
        dispatcher = Dispatcher(
            js=js,
            bodies=bodies,
            state_kv=self.state_kv,
            directory=self.directory,
            router=router,
            transactor=Transactor(
                hostname=s.hostname,
                connect_timeout=s.relay_connect_timeout,
                command_timeout=s.relay_command_timeout,
                pool=self.pool,
            ),
            notifier=Notifier(js, bodies, self.directory, s.hostname),
            signer=Signer(directory_kv) if s.relay_dkim else None,
            policy=Policy(
                schedule=list(s.relay_retry_schedule),
                max_age=s.relay_max_age,
                delay_warning=s.relay_delay_warning,
                destination_concurrency=s.relay_destination_concurrency,
            ),
        )
        settler = QueueSettler(
            self.bus, subject=names.SUBJECT_OUTBOUND, requeued=metrics.RELAY_REQUEUED, max_deliver=0
        )
        self.worker = RelayWorker(
            self.bus, dispatcher, settler, self.state_kv, concurrency=s.relay_concurrency
        )
        return self.worker

    async def close(self) -> None:
        await self.pool.close_all()
        if self.directory is not None:
            await self.directory.close()


async def queue_gauges(bus: Bus, stopping: asyncio.Event) -> None:
    """Queue depth and the age of the oldest message, every ``GAUGE_INTERVAL`` seconds."""
    while not stopping.is_set():
        with contextlib.suppress(Exception):
            info = await bus.js.stream_info(names.STREAM_OUTBOUND)
            metrics.RELAY_QUEUE_DEPTH.set(info.state.messages)
            oldest = 0.0
            if info.state.messages:
                raw = await bus.js.get_msg(names.STREAM_OUTBOUND, seq=info.state.first_seq)
                if raw.time is not None:
                    oldest = max(0.0, time.time() - raw.time.timestamp())
            metrics.RELAY_OLDEST_SECONDS.set(oldest)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), GAUGE_INTERVAL)


async def serve(ctx: ServiceContext[RelaySettings]) -> None:
    bus = await ctx.connect_bus()
    node = RelayNode(ctx.settings, bus)
    worker = await node.start()
    ctx.on_cleanup(node.close)
    ctx.ops.add_check("relay", lambda: worker.running)
    gauges = asyncio.create_task(queue_gauges(bus, ctx.stopping), name="relay-gauges")
    try:
        await worker.run(ctx.stopping)
    finally:
        gauges.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gauges
