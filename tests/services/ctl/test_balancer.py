"""The local balancer of `mailctl up --filters N`: round robin, PROXY v2 with the real
client address (read back by aiosmtpd's parser, the one the filters use), dead backends
skipped, 421 when none is left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiosmtpd.proxy_protocol import get_proxy

from services.ctl.balancer import Balancer, proxy_v2_header


class Backend:
    """Reads the PROXY header, answers with its name and the client address it was told."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await get_proxy(reader)
        line = await reader.readline()
        writer.write(f"{self.name} {data.src_addr}:{data.src_port} {line.decode()}".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    bs = [Backend("one"), Backend("two")]
    for b in bs:
        await b.start()
    yield bs
    for b in bs:
        if b.server is not None and b.server.is_serving():
            await b.stop()


async def _ask(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    local = writer.get_extra_info("sockname")
    writer.write(b"HELLO\r\n")
    await writer.drain()
    reply = (await reader.read()).decode()
    writer.close()
    return reply.replace(f"{local[0]}:{local[1]}", "CLIENT")


async def test_round_robin_with_the_client_address(backends: list[Backend]) -> None:
    lb = Balancer("127.0.0.1", 0, [("127.0.0.1", b.port) for b in backends])
    await lb.start()
    try:
        replies = [await _ask(lb.port) for _ in range(4)]
    finally:
        await lb.stop()
    assert replies == ["one CLIENT HELLO\r\n", "two CLIENT HELLO\r\n"] * 2


async def test_dead_backend_skipped_then_421(backends: list[Backend]) -> None:
    lb = Balancer("127.0.0.1", 0, [("127.0.0.1", b.port) for b in backends])
    await lb.start()
    try:
        await backends[0].stop()
        assert [await _ask(lb.port) for _ in range(2)] == ["two CLIENT HELLO\r\n"] * 2
        await backends[1].stop()
        assert (await _ask(lb.port)).startswith("421 ")
    finally:
        await lb.stop()


async def test_v6_and_mixed_addresses_parse() -> None:
    for src, dst in ((("2001:db8::1", 25), ("::1", 2525)), (("192.0.2.7", 4000), ("::1", 25))):
        reader = asyncio.StreamReader()
        reader.feed_data(proxy_v2_header(src, dst) + b"rest")
        data = await get_proxy(reader)
        assert data.valid and str(data.src_port) == str(src[1])
        addr = data.src_addr
        assert str(getattr(addr, "ipv4_mapped", None) or addr) == src[0]
