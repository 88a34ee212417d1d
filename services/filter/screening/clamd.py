"""A small asyncio client for clamd's INSTREAM command, over TCP or a unix socket.

clamd(8), INSTREAM: after ``zINSTREAM\\0`` the data goes in chunks, each prefixed by its
length as a 4-byte unsigned integer in network byte order, and a zero-length chunk ends
it. With the ``z`` prefix the reply is NUL-terminated: ``stream: OK``,
``stream: <signature> FOUND`` or ``<message> ERROR`` (e.g. when the stream exceeds
clamd's ``StreamMaxLength``).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from pathlib import Path

CHUNK = 64 * 1024
_REPLY_MAX = 4096


class ClamdError(Exception):
    """clamd is unreachable, closed early, or answered with an error."""


@dataclass(frozen=True, slots=True)
class ClamdResult:
    signature: str | None  # None: clean

    @property
    def infected(self) -> bool:
        return self.signature is not None


def parse_reply(reply: bytes) -> ClamdResult:
    """One INSTREAM reply, NUL and whitespace stripped."""
    text = reply.rstrip(b"\0").strip().decode("utf-8", "replace")
    if text.endswith(" FOUND"):
        _, _, found = text.partition(": ")
        return ClamdResult(found[: -len(" FOUND")].strip() or "unknown")
    if text == "stream: OK" or text.endswith(": OK"):
        return ClamdResult(None)
    raise ClamdError(text[:200] or "empty reply")


class ClamdClient:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 3310,
        socket_path: Path | None = None,
        chunk_size: int = CHUNK,
    ) -> None:
        self.host = host
        self.port = port
        self.socket_path = socket_path
        self.chunk_size = chunk_size

    @property
    def address(self) -> str:
        return f"unix:{self.socket_path}" if self.socket_path else f"{self.host}:{self.port}"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self.socket_path is not None:
                return await asyncio.open_unix_connection(str(self.socket_path), limit=_REPLY_MAX)
            return await asyncio.open_connection(self.host, self.port, limit=_REPLY_MAX)
        except OSError as exc:
            raise ClamdError(f"cannot connect to clamd at {self.address}: {exc}") from None

    async def _command(self, command: bytes, payload: bytes | memoryview | None) -> bytes:
        reader, writer = await self._connect()
        try:
            try:
                writer.write(b"z" + command + b"\0")
                if payload is not None:
                    view = memoryview(payload)
                    for start in range(0, len(view), self.chunk_size):
                        chunk = view[start : start + self.chunk_size]
                        writer.write(struct.pack("!I", len(chunk)))
                        writer.write(chunk)
                        await writer.drain()
                    writer.write(b"\0\0\0\0")
                await writer.drain()
            except ConnectionError:
                pass  # clamd may close early (size limit) and say why: read the reply
            try:
                reply = await reader.readuntil(b"\0")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    return exc.partial
                raise ClamdError("clamd closed the connection without a reply") from None
            except (asyncio.LimitOverrunError, ConnectionError) as exc:
                raise ClamdError(f"bad reply from clamd: {type(exc).__name__}") from None
            return reply
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def scan(self, data: bytes) -> ClamdResult:
        """Stream ``data`` to clamd and return its verdict (raises :class:`ClamdError`)."""
        return parse_reply(await self._command(b"INSTREAM", data))

    async def ping(self) -> bool:
        try:
            return (await self._command(b"PING", None)).rstrip(b"\0").strip() == b"PONG"
        except ClamdError:
            return False
