"""COMPRESS=DEFLATE (RFC 4978) with a real zlib client over a real socket: raw deflate
both ways after the tagged OK; literals (synchronizing, with their continuation, and
LITERAL+), a FETCH larger than the session's buffer, IDLE updates pushed at once, over TLS
too; refused when already active, BAD for another mechanism or before login; a corrupt or
exploding compressed stream ends the connection."""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.store import deflate
from tests.services.store.imap.conftest import (
    ALICE,
    PASSWORD,
    Factory,
    ImapHarness,
    Line,
    message,
)


@dataclass
class Deflated:
    """A raw IMAP client speaking RFC 4978 raw deflate (RFC 1951, no zlib header)."""

    plain: Line
    out: Any = field(default_factory=lambda: zlib.compressobj(6, zlib.DEFLATED, -15))
    inp: Any = field(default_factory=lambda: zlib.decompressobj(-15))
    buf: bytearray = field(default_factory=bytearray)

    async def send(self, data: bytes) -> None:
        await self.plain.send(self.out.compress(data) + self.out.flush(zlib.Z_SYNC_FLUSH))

    async def line(self, timeout: float = 30) -> bytes:
        while b"\n" not in self.buf:
            chunk = await asyncio.wait_for(self.plain.reader.read(65536), timeout)
            if not chunk:
                return b""
            self.buf += self.inp.decompress(chunk)
        i = self.buf.index(b"\n") + 1
        ln = bytes(self.buf[:i])
        del self.buf[:i]
        return ln

    async def exactly(self, n: int, timeout: float = 30) -> bytes:
        while len(self.buf) < n:
            chunk = await asyncio.wait_for(self.plain.reader.read(65536), timeout)
            assert chunk, "closed"
            self.buf += self.inp.decompress(chunk)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def until_tagged(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            ln = await self.line()
            if not ln:
                raise ConnectionError(f"closed before {tag!r}: {out!r}")
            out.append(ln)
            if ln.startswith(tag + b" "):
                return out

    async def cmd(self, data: bytes) -> list[bytes]:
        await self.send(data + b"\r\n")
        return await self.until_tagged(data.split(b" ", 1)[0])


async def _compressed(c: Line) -> Deflated:
    reply = await c.cmd(b"z COMPRESS DEFLATE")
    assert reply == [b"z OK DEFLATE active\r\n"], reply
    return Deflated(c)


async def test_advertised_after_login_only(imap: ImapHarness) -> None:
    c = await imap.raw()
    before = (await c.cmd(b"k CAPABILITY"))[0]
    assert b"COMPRESS=DEFLATE" not in before
    assert (await c.cmd(b"z COMPRESS DEFLATE"))[-1].startswith(b"z BAD")
    await c.close()
    c = await imap.raw_login()
    assert b" COMPRESS=DEFLATE" in (await c.cmd(b"k CAPABILITY"))[0]
    await c.close()


async def test_commands_and_literals_flow_compressed(imap: ImapHarness) -> None:
    d = await _compressed(await imap.raw_login())
    assert (await d.cmd(b"n NOOP"))[-1] == b"n OK NOOP completed\r\n"
    # a synchronizing literal: the continuation comes compressed, then the octets
    msg = message(1)
    await d.send(b"a APPEND INBOX (\\Seen) {%d}\r\n" % len(msg))
    assert (await d.line()).startswith(b"+ ")
    await d.send(msg + b"\r\n")
    assert (await d.until_tagged(b"a"))[-1].startswith(b"a OK [APPENDUID ")
    # LITERAL+ and a large message: more than the session's 256 KiB output buffer,
    # written past it, still one deflate stream
    big = message(2, body=b"".join(b"line %06d of a big body\r\n" % i for i in range(20000)))
    await d.send(b"b APPEND INBOX {%d+}\r\n%s\r\n" % (len(big), big))
    assert (await d.until_tagged(b"b"))[-1].startswith(b"b OK")
    assert (await d.cmd(b"s SELECT INBOX"))[-1].startswith(b"s OK")
    await d.send(b"f FETCH 2 BODY.PEEK[]\r\n")
    head = await d.line()
    assert head == b"* 2 FETCH (BODY[] {%d}\r\n" % len(big)
    assert await d.exactly(len(big)) == big
    assert await d.line() == b")\r\n"
    assert (await d.line()).startswith(b"f OK")
    # already compressed: NO [COMPRESSIONACTIVE], and the stream stays usable
    again = await d.cmd(b"z2 COMPRESS DEFLATE")
    assert again[-1].startswith(b"z2 NO [COMPRESSIONACTIVE]"), again
    assert (await d.cmd(b"l LOGOUT"))[-1].startswith(b"l OK")
    await d.plain.close()


async def test_idle_updates_are_flushed_at_once(imap: ImapHarness) -> None:
    d = await _compressed(await imap.raw_login())
    assert (await d.cmd(b"s SELECT INBOX"))[-1].startswith(b"s OK")
    await d.send(b"i IDLE\r\n")
    assert (await d.line()).startswith(b"+ ")
    await imap.deliver(message(1))
    # the EXISTS arrives while the session waits in IDLE: the compressor was flushed
    assert await d.line() == b"* 1 EXISTS\r\n"
    await d.send(b"DONE\r\n")
    tail = await d.until_tagged(b"i")
    assert tail[-1].startswith(b"i OK")
    await d.plain.close()


async def test_over_tls(imap: ImapHarness) -> None:
    # our TLS does not compress (RFC 4978 §4 would refuse then): deflate inside TLS
    c = await imap.raw(tls=True)
    login = await c.cmd(f'L LOGIN {ALICE} "{PASSWORD}"'.encode())
    assert login[-1].startswith(b"L OK")
    d = await _compressed(c)
    assert (await d.cmd(b"s STATUS INBOX (MESSAGES)"))[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
    await d.plain.close()


async def test_unknown_mechanism_is_bad(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    assert (await c.cmd(b"z COMPRESS GZIP"))[-1].startswith(b"z BAD")
    assert (await c.cmd(b"n NOOP"))[-1].startswith(b"n OK")  # still uncompressed
    await c.close()


async def test_corrupt_stream_ends_the_connection(imap: ImapHarness) -> None:
    d = await _compressed(await imap.raw_login())
    await d.plain.send(b"\xff\xff\xff\xff not deflate at all")
    assert await d.plain.reader.read() == b""  # closed by the server
    await d.plain.close()


async def test_deflate_bomb_ends_the_connection(make_imap: Factory) -> None:
    h = await make_imap(max_message_size=2000)
    d = await _compressed(await h.raw_login())
    # 32 MiB of zeros is ~32 KiB compressed: far beyond one message and a line
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b"\0" * (32 * 1024 * 1024)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    await d.plain.send(data)
    assert await d.plain.reader.read() == b""
    await d.plain.close()


class _Ssl:
    def __init__(self, method: str | None) -> None:
        self.method = method

    def compression(self) -> str | None:
        return self.method


class _Writer:
    def __init__(self, ssl_object: object) -> None:
        self.ssl_object = ssl_object

    def get_extra_info(self, name: str) -> object:
        return self.ssl_object if name == "ssl_object" else None


@pytest.mark.parametrize(
    ("ssl_object", "compressed"),
    [(None, False), (_Ssl(None), False), (_Ssl("zlib"), True)],
)
def test_tls_compression_is_recognised(ssl_object: object, compressed: bool) -> None:
    assert deflate.tls_compressed(_Writer(ssl_object)) is compressed  # type: ignore[arg-type]
