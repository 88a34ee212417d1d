"""The fake scanners: one keeps the connection open and says nothing, one says garbage."""

from __future__ import annotations

import asyncio

from reliability.fakes import GARBAGE, fake_scanner


async def test_hang_accepts_and_never_answers() -> None:
    async with fake_scanner("hang") as port:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"PING SPAMC/1.5\r\n\r\n")
        await w.drain()
        done, _ = await asyncio.wait({asyncio.ensure_future(r.read(1))}, timeout=0.5)
        assert not done  # nothing came, and the connection is still open
        w.close()


async def test_garbage_answers_garbage_then_closes() -> None:
    async with fake_scanner("garbage") as port:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"zINSTREAM\0")
        await w.drain()
        assert await r.read() == GARBAGE
        w.close()
