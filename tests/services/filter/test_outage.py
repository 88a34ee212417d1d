"""NATS goes away: the filter answers 451 (never 250, never 5xx), recipients are still
checked from the directory's in-memory copy, and nothing accepted is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mailcore.bus.connect import Bus
from services.filter.app import FilterNode
from services.filter.smtp import replies
from tests.conftest import fresh_bus
from tests.services.filter.conftest import ALICE, RawClient, StartFilter, provision, stream_messages
from tests.support.daemons import NatsServer

MESSAGE = b"Subject: during the outage\r\n\r\nhello\r\n"


@pytest.fixture
async def own_bus(own_nats: NatsServer) -> AsyncIterator[Bus]:
    bus = await fresh_bus(own_nats.url)
    await provision(bus)
    yield bus
    await bus.close()


async def deliver(node: FilterNode) -> str:
    client = await RawClient.connect(node.settings.smtp_port)
    try:
        await client.expect("EHLO client.test", 250)
        await client.expect("MAIL FROM:<carol@remote.test>", 250)
        await client.expect(f"RCPT TO:<{ALICE}>", 250)
        return await client.send_message(MESSAGE)
    finally:
        await client.close()


async def test_nats_stopped_is_451_and_nothing_is_lost(
    own_nats: NatsServer, own_bus: Bus, start_filter: StartFilter
) -> None:
    node = await start_filter(bus_=own_bus, handoff_timeout=2.0, handoff_patience=0)
    before = await deliver(node)
    assert before.startswith("250 2.0.0 Ok: queued as ")

    own_nats.stop()
    during = await deliver(node)  # MAIL and RCPT still work: the directory is in memory
    assert during == str(replies.BUS_UNAVAILABLE)  # 451 4.3.0, after the hand-off timeout

    own_nats.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    after = await deliver(node)
    while not after.startswith("250 ") and loop.time() < deadline:
        assert after.startswith("451 "), after  # only ever a temporary failure
        await asyncio.sleep(0.5)
        after = await deliver(node)
    assert after.startswith("250 2.0.0 Ok: queued as ")

    ids = {m.id for m in await stream_messages(own_bus)}
    # Both accepted messages survived the restart (JetStream fsyncs before the PubAck).
    assert before.rsplit(" ", 1)[1] in ids
    assert after.rsplit(" ", 1)[1] in ids
