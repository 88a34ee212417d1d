"""A local TCP balancer for ``mailctl up --filters N``: the compose topology without Docker.

It listens on the public SMTP ports and hands each connection to the next filter process
(round robin) on its PROXY-protocol port, with a PROXY v2 header first, so every filter
sees the real client address, as behind HAProxy. A filter that refuses the connection (it
is restarting) is skipped for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import struct

from mailcore.logging import get_logger

log = get_logger("balancer")

# PROXY protocol v2 (HAProxy's proxy-protocol.txt §2.2): signature, version 2 + PROXY command.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_PROXY = 0x21
TCP4, TCP6 = 0x11, 0x21
CHUNK = 64 * 1024


def proxy_v2_header(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """The binary header announcing a TCP connection from ``src`` to ``dst``."""
    s_ip, d_ip = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if isinstance(s_ip, ipaddress.IPv4Address) and isinstance(d_ip, ipaddress.IPv4Address):
        family, body = TCP4, s_ip.packed + d_ip.packed
    else:
        s6 = s_ip if s_ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{s_ip}")
        d6 = d_ip if d_ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{d_ip}")
        family, body = TCP6, s6.packed + d6.packed
    body += struct.pack("!HH", src[1], dst[1])
    return V2_SIGNATURE + bytes([V2_PROXY, family]) + struct.pack("!H", len(body)) + body


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class Balancer:
    """One listening port, round robin over ``backends`` (host, port) with PROXY v2."""

    def __init__(self, host: str, port: int, backends: list[tuple[str, int]]) -> None:
        self.host, self.port = host, port
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in self.backends:
            host, port = self.backends[next(self._next)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            except (OSError, TimeoutError):
                continue
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        backend = await self._connect()
        if backend is None:
            log.warning("no filter process accepts connections", port=self.port)
            # RFC 5321 §3.8: a server that cannot serve says 421 and closes.
            writer.write(b"421 4.3.2 Service not available, try again later\r\n")
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()
            return
        b_reader, b_writer = backend
        try:
            b_writer.write(proxy_v2_header(peer[:2], local[:2]))
            await asyncio.gather(_pipe(reader, b_writer), _pipe(b_reader, writer))
        finally:
            for w in (writer, b_writer):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
