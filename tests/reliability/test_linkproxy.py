"""The link proxy the mirror scenarios cut: bytes flow while it is up; a reset closes the
open connections and refuses new ones; a stall holds bytes and new connections until the
link is restored, then delivers them."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from reliability.linkproxy import LinkProxy, LinkState


class Echo:
    """A server that echoes lines and counts the connections it got."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        with contextlib.suppress(ConnectionError):
            while line := await r.readline():
                w.write(line)
                await w.drain()
        w.close()

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


async def _pair() -> tuple[Echo, LinkProxy]:
    echo = Echo()
    await echo.start()
    proxy = LinkProxy(echo.port)
    await proxy.start()
    return echo, proxy


async def _ask(r: asyncio.StreamReader, w: asyncio.StreamWriter, text: bytes) -> bytes:
    w.write(text)
    await w.drain()
    return await r.readline()


async def test_up_forwards_both_ways() -> None:
    echo, proxy = await _pair()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _ask(r, w, b"ping\n") == b"ping\n"
        assert proxy.stats.connections == 1 and proxy.url.endswith(f":{proxy.port}")
        w.close()
    finally:
        await proxy.stop()
        echo.close()


async def test_reset_drops_open_connections_and_refuses_new_ones_until_restored() -> None:
    echo, proxy = await _pair()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _ask(r, w, b"one\n") == b"one\n"
        proxy.cut(LinkState.RESET)
        with contextlib.suppress(ConnectionError):
            assert await r.read() == b""  # the open connection ends
        r2, _ = await asyncio.open_connection("127.0.0.1", proxy.port)
        with contextlib.suppress(ConnectionError):
            assert await r2.read() == b""  # a new one is closed on arrival
        assert (proxy.stats.cuts, proxy.stats.cut, proxy.stats.refused) == (1, 1, 1)
        proxy.restore()
        r3, w3 = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _ask(r3, w3, b"two\n") == b"two\n"
        w3.close()
    finally:
        await proxy.stop()
        echo.close()


async def test_stall_holds_bytes_and_new_connections_then_delivers_them() -> None:
    echo, proxy = await _pair()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _ask(r, w, b"before\n") == b"before\n"
        proxy.cut(LinkState.STALL)
        w.write(b"held\n")
        await w.drain()
        with pytest.raises(TimeoutError):  # nothing comes back while stalled
            await asyncio.wait_for(r.readline(), 0.3)
        r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
        w2.write(b"new\n")
        await w2.drain()
        await asyncio.sleep(0.2)
        assert echo.accepted == 1  # the new connection is held, not passed on
        proxy.restore()
        assert await r.readline() == b"held\n"  # the same connection, bytes delivered
        assert await r2.readline() == b"new\n"
        assert echo.accepted == 2 and proxy.stats.cut == 0 and proxy.stats.cuts == 1
        w.close()
        w2.close()
    finally:
        await proxy.stop()
        echo.close()


async def test_a_reset_during_a_stall_drops_the_held_connections() -> None:
    echo, proxy = await _pair()
    try:
        proxy.cut(LinkState.STALL)
        r, _ = await asyncio.open_connection("127.0.0.1", proxy.port)
        await asyncio.sleep(0.1)  # accepted and held
        proxy.cut(LinkState.RESET)
        with contextlib.suppress(ConnectionError):
            assert await r.read() == b""
        proxy.restore()
        assert echo.accepted == 0 and proxy.stats.cuts == 1
    finally:
        await proxy.stop()
        echo.close()


def test_cut_takes_a_down_state() -> None:
    with pytest.raises(ValueError, match="restore"):
        LinkProxy(1).cut(LinkState.UP)
