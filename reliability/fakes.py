"""Fake scanners for the scanner-failure scenarios: a TCP server that accepts and then
never answers (hang), or answers garbage and closes. These scenarios are about the
filter's reaction, so the far end need not be a real spamd or clamd."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

Mode = Literal["hang", "garbage"]

GARBAGE = b"\x00\xffSPAMD/9.9 EX_WHAT \xfe garbage\r\nstream: \x01\x02 FOUND?\r\n\r\n"


@contextlib.asynccontextmanager
async def fake_scanner(mode: Mode, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Serve ``mode`` on a free port; yield the port."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if mode == "hang":
            held.append(writer)  # keep the socket open, read nothing, say nothing
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(4096), 2)
            writer.write(GARBAGE)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield int(port)
    finally:
        server.close()
        for w in held:
            w.close()
