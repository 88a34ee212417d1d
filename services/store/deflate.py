"""A raw DEFLATE layer under an established connection (RFC 4978 COMPRESS=DEFLATE, RFC 1951
without zlib or gzip headers, both directions).

Input: the transport's protocol is wrapped, so every chunk read from the socket is
inflated before the StreamReader sees it; lines and literals are then read exactly as
before. Output: each write is deflated and ends with a sync flush (RFC 4978 §4: what the
server wants the client to see now — a continuation, an IDLE update, a tagged reply — is
never held back inside the compressor), so the connection's own buffering decides when
octets go out, as without compression.
"""

from __future__ import annotations

import asyncio
import zlib

from mailcore.logging import get_logger

log = get_logger("deflate")


class InflateError(ConnectionError):
    """The client's compressed stream is corrupt or inflates beyond the allowed size."""


class Deflater:
    """The server-to-client half: one raw deflate stream for the rest of the connection."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)

    def __call__(self, data: bytes | bytearray) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)


class InflatingProtocol(asyncio.Protocol):
    """Wraps the connection's protocol: inflates what arrives and hands it on; everything
    else (flow control, EOF, loss) goes to the wrapped protocol unchanged."""

    def __init__(
        self, inner: asyncio.BaseProtocol, transport: asyncio.WriteTransport, max_burst: int
    ) -> None:
        self._inner = inner
        self._transport = transport
        self._z = zlib.decompressobj(-15)
        # one socket read never inflates to more than this: a deflate bomb (1:1000) ends
        # the connection instead of filling memory
        self._max_burst = max_burst

    def data_received(self, data: bytes) -> None:
        assert isinstance(self._inner, asyncio.Protocol)
        try:
            out = self._z.decompress(data, self._max_burst + 1)
        except zlib.error:
            self._fail(InflateError("corrupt deflate stream"))
            return
        if len(out) > self._max_burst or self._z.unconsumed_tail:
            self._fail(InflateError("deflate stream inflates too far"))
            return
        if out:
            self._inner.data_received(out)

    def _fail(self, exc: Exception) -> None:
        log.info("compressed input refused; connection dropped", reason=str(exc))
        self._transport.abort()  # connection_lost follows and reaches the reader

    def eof_received(self) -> bool | None:
        assert isinstance(self._inner, asyncio.Protocol)
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def tls_compressed(writer: asyncio.StreamWriter) -> bool:
    """Whether the TLS layer under this writer compresses already (RFC 4978 §4)."""
    ssl_object = writer.get_extra_info("ssl_object")
    return ssl_object is not None and ssl_object.compression() is not None
