"""The inbound depth gauges read MAIL_INBOUND on a real nats-server: what the store has
not acked yet, and the oldest message's age."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from services.filter import inbound_gauges


async def _publish(bus: Bus, count: int) -> None:
    objects = await bus.js.object_store(names.OBJ_BODIES)
    for i in range(count):
        msg = MailMessage(
            id=new_message_id(), mail_from="a@x.test", recipients=["b@y.test"], size=0
        )
        await publish_mail(
            bus.js, objects, names.SUBJECT_INBOUND, msg, f"Subject: {i}\r\n\r\n".encode()
        )


async def test_depth_counts_what_waits_for_the_store(bus: Bus) -> None:
    assert await inbound_gauges.read_once(bus) == (0, 0.0)
    await _publish(bus, 3)
    depth, oldest = await inbound_gauges.read_once(bus)
    assert depth == 3 and 0.0 < oldest < 3600  # from the stream's first_ts


async def test_run_sets_the_gauges_and_stops(bus: Bus) -> None:
    await _publish(bus, 2)
    stopping = asyncio.Event()
    task = asyncio.create_task(inbound_gauges.run(bus, stopping, interval=0.05))
    while REGISTRY.get_sample_value("postern_inbound_queue_depth") != 2:
        await asyncio.sleep(0.05)
    stopping.set()
    await task
    assert REGISTRY.get_sample_value("postern_inbound_oldest_seconds") is not None
