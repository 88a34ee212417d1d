"""Declarations are idempotent; limits hold; the claim check carries large bodies."""

from __future__ import annotations

import dataclasses
import os

import pytest
from nats.js.errors import APIError

from mailcore.bus import names
from mailcore.bus.claimcheck import BodyMissing, drop_body, load_body, publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, decode_mail, new_message_id
from mailcore.bus.setup import declare_all, inbound_fill
from tests.conftest import TEST_LIMITS


async def test_declare_twice_is_harmless(bus: Bus) -> None:
    await declare_all(bus.js, TEST_LIMITS)
    await declare_all(bus.js, TEST_LIMITS)
    info = await bus.js.stream_info(names.STREAM_INBOUND)
    assert info.config.max_bytes == TEST_LIMITS.inbound_max_bytes
    assert info.config.duplicate_window == 120
    consumer = await bus.js.consumer_info(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)
    assert consumer.config.max_deliver == TEST_LIMITS.delivery_max_deliver


async def test_changed_limit_is_applied(bus: Bus) -> None:
    bigger = dataclasses.replace(TEST_LIMITS, inbound_max_bytes=300 * 1024**2)
    await declare_all(bus.js, bigger)
    info = await bus.js.stream_info(names.STREAM_INBOUND)
    assert info.config.max_bytes == 300 * 1024**2
    await declare_all(bus.js, TEST_LIMITS)


def _msg() -> MailMessage:
    return MailMessage(
        id=new_message_id(), mail_from="a@example.org", recipients=["b@x.test"], size=0
    )


async def _fetch_one(bus: Bus) -> bytes:
    sub = await bus.js.pull_subscribe(names.SUBJECT_INBOUND, durable=names.CONSUMER_DELIVERY)
    msgs = await sub.fetch(1, timeout=5)
    await msgs[0].ack()
    await sub.unsubscribe()
    return msgs[0].data


async def test_small_body_inline(bus: Bus) -> None:
    body = b"Subject: hi\r\n\r\nsmall\r\n"
    msg = _msg()
    ack = await publish_mail(
        bus.js, await bus.js.object_store(names.OBJ_BODIES), names.SUBJECT_INBOUND, msg, body
    )
    assert ack.stream == names.STREAM_INBOUND
    got = decode_mail(await _fetch_one(bus))
    assert got.body_ref is None
    assert got.body == body


async def test_large_body_claim_check(bus: Bus) -> None:
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    body = b"Subject: big\r\n\r\n" + os.urandom(700 * 1024).hex().encode()
    msg = _msg()
    await publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, body)
    got = decode_mail(await _fetch_one(bus))
    assert got.body_ref is not None
    assert got.body == b""
    assert await load_body(bodies, got) == body
    await drop_body(bodies, got)
    with pytest.raises(BodyMissing):
        await load_body(bodies, got)


async def test_duplicate_ids_stored_once(bus: Bus) -> None:
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    msg = _msg()
    first = await publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, b"x\r\n")
    again = await publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, b"x\r\n")
    assert again.duplicate
    assert again.seq == first.seq
    info = await bus.js.stream_info(names.STREAM_INBOUND)
    assert info.state.messages == 1


async def test_full_stream_refuses_and_reports_fill(bus: Bus) -> None:
    small = dataclasses.replace(TEST_LIMITS, inbound_max_bytes=64 * 1024)
    await declare_all(bus.js, small)
    try:
        bodies = await bus.js.object_store(names.OBJ_BODIES)
        with pytest.raises(APIError):
            for _ in range(100):
                await publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, _msg(), b"y" * 4000)
        assert await inbound_fill(bus.js) > 0.9
    finally:
        await bus.js.purge_stream(names.STREAM_INBOUND)
        await declare_all(bus.js, TEST_LIMITS)


async def test_outbound_has_an_age_limit_and_the_relay_consumer(bus: Bus) -> None:
    info = await bus.js.stream_info(names.STREAM_OUTBOUND)
    assert info.config.max_bytes == TEST_LIMITS.outbound_max_bytes
    assert info.config.max_age == TEST_LIMITS.outbound_max_age
    shorter = dataclasses.replace(TEST_LIMITS, outbound_max_age=3600.0)
    await declare_all(bus.js, shorter)  # a changed age limit is applied in place
    assert (await bus.js.stream_info(names.STREAM_OUTBOUND)).config.max_age == 3600.0
    await declare_all(bus.js, TEST_LIMITS)
    relay = await bus.js.consumer_info(names.STREAM_OUTBOUND, names.CONSUMER_RELAY)
    assert relay.config.filter_subject == names.SUBJECT_OUTBOUND
    assert relay.config.max_deliver == -1  # the relay gives up by age, not by count
    await bus.js.key_value(names.KV_RELAY)  # declared
