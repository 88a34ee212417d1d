"""Stored message bytes to a POP3 multi-line response, a chunk at a time.

RFC 1939 §3: lines end with CRLF; a line that begins with "." gets one more "." (byte
stuffing); the response ends with CRLF.CRLF. RFC 1939 §7 TOP: the header, the blank line,
then at most ``n`` body lines.

The work is done with ``bytes.count``/``bytes.replace``/``bytes.find`` on whole chunks — no
per-line Python loop on the RETR path — and the state that crosses a chunk boundary is two
flags and at most three bytes, so a message of any size goes out in constant memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import BinaryIO

CHUNK = 256 * 1024
# Reads larger than this run in a thread (a chunk of a big message may come from disk);
# smaller ones, which is every read of a typical message, stay on the event loop.
INLINE_READ = 64 * 1024

_CR = 0x0D
_LF = 0x0A
_DOT = 0x2E


class WireEncoder:
    """Feed raw stored bytes in any chunking; get wire bytes back.

    ``body_lines`` None sends the whole message (RETR); a number cuts after the header
    and that many body lines (TOP). When :attr:`done` is set the rest of the message is
    not needed. :meth:`finish` returns the terminator (and ends an unterminated last line).
    """

    __slots__ = ("_carry", "_in_header", "_limit", "_line_start", "_tail", "done")

    def __init__(self, body_lines: int | None = None) -> None:
        self._carry = False  # a CR held back: its LF may start the next chunk
        self._line_start = True  # the next byte sent starts a line
        self._limit = body_lines
        self._in_header = body_lines is not None
        # Pretend a line break precedes the message, so an empty header (message that
        # starts with a blank line) is found like any other end of header.
        self._tail = b"\r\n"
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        data = b"\r" + chunk if self._carry else chunk
        self._carry = bool(data) and data[-1] == _CR
        if self._carry:
            data = data[:-1]
        if not data:
            return data
        # Line endings to CRLF: a stored bare LF becomes CRLF; CRLF stays. A CR/LF pair
        # never straddles chunks because a trailing CR is held back above.
        lf = data.count(b"\n")
        if lf and lf != data.count(b"\r\n"):
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self._limit is not None:
            data = self._cut(data)
        return self._stuff(data)

    def finish(self) -> bytes:
        if self._carry and not self.done:
            self._line_start = True  # a lone CR at the very end: end that line properly
            return b"\r\n.\r\n"
        return b".\r\n" if self._line_start else b"\r\n.\r\n"

    def _stuff(self, data: bytes) -> bytes:
        if not data:
            return data
        if self._line_start and data[0] == _DOT:
            data = b"." + data
        if b"\n." in data:  # after normalising, every LF is part of a CRLF
            data = data.replace(b"\n.", b"\n..")
        self._line_start = data[-1] == _LF
        return data

    def _cut(self, data: bytes) -> bytes:
        if self._in_header:
            probe = self._tail + data
            i = probe.find(b"\r\n\r\n")
            if i < 0:
                self._tail = probe[-3:]
                return data
            end = i + 4 - len(self._tail)  # just after the blank line, as an index of data
            self._in_header = False
            head, body = data[:end], data[end:]
            if self._limit == 0:
                self.done = True
                return head
            return head + self._cut_body(body)
        return self._cut_body(data)

    def _cut_body(self, data: bytes) -> bytes:
        assert self._limit is not None
        n = data.count(b"\n")
        if n < self._limit:
            self._limit -= n
            return data
        pos = -1
        for _ in range(self._limit):  # only in the last chunk of a TOP, at most n lines
            pos = data.find(b"\n", pos + 1)
        self.done = True
        return data[: pos + 1]


async def send_message(
    writer: asyncio.StreamWriter,
    source: BinaryIO,
    first_line: bytes,
    *,
    body_lines: int | None = None,
    size_hint: int | None = None,
    chunk_size: int = CHUNK,
    drain: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Write ``first_line``, the encoded message and the terminator.

    A message smaller than one chunk leaves in a single write together with its status
    line and terminator; larger ones go out one write per chunk, waiting for the socket
    to drain in between, so memory stays at about one chunk per session. ``size_hint``
    (the stored size) sizes the first read, so a small message costs one read of its own
    size — a short read of a regular file is its end. ``drain`` waits for the socket
    (the session passes its bounded :meth:`Connection.drain`; default ``writer.drain``).
    """
    wait = writer.drain if drain is None else drain
    enc = WireEncoder(body_lines)
    out = first_line
    want = chunk_size if size_hint is None else min(size_hint + 1, chunk_size)
    while True:
        chunk = (
            source.read(want) if want <= INLINE_READ else await asyncio.to_thread(source.read, want)
        )
        if chunk:
            out += enc.feed(chunk)
        if enc.done or len(chunk) < want:  # TOP has its lines, or the end of the file
            writer.write(out + enc.finish())
            return
        writer.write(out)
        await wait()
        out = b""
        want = chunk_size
