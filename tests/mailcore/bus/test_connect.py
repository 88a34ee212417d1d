"""Connecting: a bounded wait for a missing server, reconnect listeners after a restart."""

from __future__ import annotations

import asyncio

import pytest

from mailcore.bus.connect import connect
from services.ctl import daemons
from tests.support.daemons import NatsServer


async def test_missing_server_fails_after_the_wait() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ConnectionError, match="no NATS server"):
        await connect(f"nats://127.0.0.1:{daemons.free_port()}", "test", wait=1.0)
    assert loop.time() - start < 10


async def test_reconnect_listeners_run_after_a_restart(own_nats: NatsServer) -> None:
    bus = await connect(own_nats.url, "test")
    called = asyncio.Event()

    async def listener() -> None:
        called.set()

    bus.on_reconnect(listener)
    try:
        own_nats.stop()
        await asyncio.sleep(0.5)
        assert not bus.connected
        own_nats.start()
        await asyncio.wait_for(called.wait(), 30)
        assert bus.connected
    finally:
        await bus.close()
