"""The dead-letter stream: declared with its own budget, never discarding old letters;
a dead letter round-trips its frame and headers."""

from __future__ import annotations

import dataclasses

import pytest
from nats.js import api as js_api
from nats.js.errors import APIError

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.bus.deadletter import get_dead, iter_dead, publish_dead
from mailcore.bus.setup import BusLimits, declare_all
from mailcore.config import StoreSettings
from tests.conftest import TEST_LIMITS


async def test_dead_stream_is_declared_with_its_budget(bus: Bus) -> None:
    info = await bus.js.stream_info(names.STREAM_DEAD)
    c = info.config
    assert c.subjects == [names.SUBJECT_DEAD]
    assert c.retention == js_api.RetentionPolicy.LIMITS
    assert c.storage == js_api.StorageType.FILE
    assert c.discard == js_api.DiscardPolicy.NEW  # never drops an old dead letter
    assert c.max_bytes == TEST_LIMITS.dead_max_bytes
    assert not c.max_age  # kept until an operator retries or drops them
    assert c.max_msgs in (None, -1)
    bigger = dataclasses.replace(TEST_LIMITS, dead_max_bytes=100 * 1024**2)
    await declare_all(bus.js, bigger)
    try:
        assert (await bus.js.stream_info(names.STREAM_DEAD)).config.max_bytes == 100 * 1024**2
    finally:
        await declare_all(bus.js, TEST_LIMITS)


def test_budget_comes_from_the_setting() -> None:
    s = StoreSettings(dead_max_bytes=123456)
    assert BusLimits.from_settings(s).dead_max_bytes == 123456


async def test_dead_letter_round_trip(bus: Bus) -> None:
    payload = b'{"v":1}\nraw \x00 bytes'
    ack = await publish_dead(
        bus.js,
        payload,
        reason="unknown_recipient",
        recipients=["jörg@exämple.org", "b,c@example.org"],
        message_id="01ABC",
        detail="line one\r\nline two " + "x" * 1000,
        source_seq=42,
    )
    # The same dead letter published twice (a lost PubAck) is stored once.
    again = await publish_dead(
        bus.js,
        payload,
        reason="unknown_recipient",
        recipients=["jörg@exämple.org", "b,c@example.org"],
        message_id="01ABC",
        source_seq=42,
    )
    assert again.duplicate and again.seq == ack.seq
    letter = await get_dead(bus.js, ack.seq)
    assert letter is not None
    assert letter.payload == payload
    assert letter.recipients == ["jörg@exämple.org", "b,c@example.org"]
    assert (letter.reason, letter.message_id, letter.source_seq) == (
        "unknown_recipient",
        "01ABC",
        42,
    )
    assert letter.detail.startswith("line one line two x") and len(letter.detail) <= 300
    assert letter.retryable and letter.dead_at > 0
    assert [d.seq async for d in iter_dead(bus.js)] == [ack.seq]
    assert await get_dead(bus.js, ack.seq + 100) is None


async def test_full_dead_stream_refuses_new_letters(bus: Bus) -> None:
    small = dataclasses.replace(TEST_LIMITS, dead_max_bytes=16 * 1024)
    await declare_all(bus.js, small)
    try:
        first = await publish_dead(
            bus.js, b"first", reason="poison", recipients=[], message_id="", source_seq=1
        )
        with pytest.raises(APIError):
            for i in range(100):
                await publish_dead(
                    bus.js,
                    b"p" * 2000,
                    reason="poison",
                    recipients=[],
                    message_id="",
                    source_seq=i + 2,
                )
        assert await get_dead(bus.js, first.seq) is not None  # the oldest is still there
    finally:
        await bus.js.purge_stream(names.STREAM_DEAD)
        await declare_all(bus.js, TEST_LIMITS)
