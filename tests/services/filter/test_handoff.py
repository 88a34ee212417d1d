"""The hand-off against real JetStream: ids, both streams, claim check, duplicates, and a
stream at its byte budget (452, not 451)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.bus.setup import BusLimits
from services.filter import errors
from services.filter.handoff import FillGate, Handoff
from tests.conftest import fresh_bus
from tests.services.filter.conftest import message_body, stream_messages
from tests.support.daemons import NatsServer


async def handoff_for(bus: Bus, high_water: float = 0.9) -> Handoff:
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    gate = FillGate(bus.js, high_water, interval=0.2)
    await gate.refresh()
    return Handoff(bus.js, bodies, gate, inline_max=512 * 1024, timeout=5.0)


def message() -> MailMessage:
    return MailMessage(id=new_message_id(), mail_from="a@remote.test", recipients=[], size=0)


async def test_inline_message_carries_its_id(bus: Bus) -> None:
    handoff = await handoff_for(bus)
    msg = message()
    await handoff.publish(msg, b"Subject: x\r\n\r\ny\r\n", local=["alice@example.test"], remote=[])
    info = await bus.js.stream_info(names.STREAM_INBOUND)
    raw = await bus.js.get_msg(names.STREAM_INBOUND, info.state.last_seq)
    assert raw.headers is not None and raw.headers[names.HDR_MSG_ID] == msg.id
    [stored] = await stream_messages(bus)
    assert stored.recipients == ["alice@example.test"] and stored.body_ref is None


async def test_local_and_remote_go_to_both_streams(bus: Bus) -> None:
    handoff = await handoff_for(bus)
    msg = message()
    body = b"Subject: big\r\n\r\n" + b"z" * (600 * 1024) + b"\r\n"  # claim-checked
    await handoff.publish(msg, body, local=["alice@example.test"], remote=["x@remote.test"])
    [inbound] = await stream_messages(bus)
    [outbound] = await stream_messages(bus, names.STREAM_OUTBOUND)
    assert inbound.id == outbound.id == msg.id
    assert inbound.body_ref != outbound.body_ref  # one body object per destination
    assert await message_body(bus, inbound) == body == await message_body(bus, outbound)


async def test_a_retried_publish_is_stored_once(bus: Bus) -> None:
    handoff = await handoff_for(bus)
    msg = message()
    for _ in range(2):
        await handoff.publish(msg, b"Subject: x\r\n\r\ny\r\n", local=["a@example.test"], remote=[])
    assert len(await stream_messages(bus)) == 1  # Nats-Msg-Id de-duplicates


@pytest.fixture
async def tiny_bus(own_nats: NatsServer) -> AsyncIterator[Bus]:
    bus = await fresh_bus(own_nats.url, BusLimits(inbound_max_bytes=64 * 1024))
    yield bus
    await bus.close()


async def test_a_full_stream_is_storage_full_not_a_bus_failure(tiny_bus: Bus) -> None:
    handoff = await handoff_for(tiny_bus, high_water=1.0)
    body = b"Subject: fill\r\n\r\n" + b"f" * 20_000 + b"\r\n"
    with pytest.raises(errors.StorageFull):
        for _ in range(10):
            await handoff.publish(message(), body, local=["a@example.test"], remote=[])
    assert handoff.gate.full  # the next transactions get 452 at once


async def test_fill_gate_reads_the_stream(tiny_bus: Bus) -> None:
    handoff = await handoff_for(tiny_bus, high_water=0.25)
    assert not handoff.gate.full
    body = b"Subject: fill\r\n\r\n" + b"f" * 20_000 + b"\r\n"
    await handoff.publish(message(), body, local=["a@example.test"], remote=[])
    await handoff.gate.refresh()
    assert handoff.gate.fill > 0.25 and handoff.gate.full
