"""What HAProxy sends a filter's PROXY ports: v1 and v2 headers, and a relay that writes
the header and the client's first bytes at once, as ``send-proxy-v2`` does."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

from services.ctl.daemons import free_port

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src: str, dst: str = "192.0.2.25") -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} 40000 25\r\n".encode()


def v2(src: str, dst: str = "192.0.2.25", local: bool = False) -> bytes:
    if local:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    source, target = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x21 if source.version == 6 else 0x11  # AF_INET6 / AF_INET, STREAM
    body = source.packed + target.packed + struct.pack("!HH", 40000, 25)
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


class HaproxyLike:
    """A TCP relay that does what HAProxy's ``send-proxy-v2`` does: it reads the client's
    first bytes, then opens the server connection and writes the PROXY header and those
    bytes in one write, then relays both ways."""

    def __init__(self, target: int, header: bytes) -> None:
        self.target = target
        self.header = header
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> HaproxyLike:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _relay(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        first = await c_reader.read(65536)
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target)
        s_writer.write(self.header + first)
        await asyncio.gather(
            _pipe(c_reader, s_writer), _pipe(s_reader, c_writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
