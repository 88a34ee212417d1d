"""SMTP framing, pure (bytes in, lines and message bodies out; no sockets).

This is where SMTP smuggling is stopped (CVE-2023-51764 and its kin): RFC 5321 §2.3.8
says lines end with CRLF and a bare CR or LF is not a line ending. Command lines must
end with CRLF and hold no other CR or LF; message data ends only at ``<CRLF>.<CRLF>``, and a
message with any bare CR or LF in it is refused as a whole, so whatever a sender meant to
hide behind ``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n`` and the like is never a second message.
"""

from __future__ import annotations

import enum

CRLF = b"\r\n"
# RFC 5321 §4.1.1.4: the data ends with a line holding a single period.
END_OF_DATA = b"\r\n.\r\n"
# RFC 5321 §4.5.3.1.4 gives 512 octets for a command line; AUTH's initial response may be
# longer (RFC 4954 §4 allows 12288), so one generous bound applies to every command line.
COMMAND_LINE_MAX = 4096
# RFC 5322 §2.1.1 / RFC 5321 §4.5.3.1.6: 998 characters plus CRLF, plus one for a
# transparency period (RFC 5321 §4.5.2) on the wire.
DATA_LINE_MAX = 999


class TooLong:
    """``LineBuffer.next_line`` result for a line over the limit (already discarded)."""


TOO_LONG = TooLong()


class LineBuffer:
    """Bytes received but not consumed yet; hands out command lines one at a time.

    A line over ``limit`` is discarded as it arrives (memory stays bounded) and reported
    once as :data:`TOO_LONG` when its end comes, so the session can answer and go on.
    """

    __slots__ = ("_buf", "_discarding", "limit")

    def __init__(self, limit: int = COMMAND_LINE_MAX) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_line(self) -> bytes | TooLong | None:
        """The next complete line (terminator included), TOO_LONG, or None for "need more"."""
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > self.limit:
                self._discarding = True
                del self._buf[:]
            return None
        line = bytes(self._buf[: nl + 1])
        del self._buf[: nl + 1]
        if self._discarding or len(line) > self.limit:
            self._discarding = False
            return TOO_LONG
        return line

    def has_line(self) -> bool:
        return b"\n" in self._buf

    def take(self) -> bytes:
        """Everything buffered (e.g. what follows DATA's terminator goes back to DATA)."""
        data = bytes(self._buf)
        del self._buf[:]
        return data

    def clear(self) -> None:
        """Forget buffered bytes (RFC 3207 §4.2: nothing sent before TLS is kept)."""
        del self._buf[:]
        self._discarding = False

    def __len__(self) -> int:
        return len(self._buf)


def command_text(line: bytes) -> bytes | None:
    """The command without its CRLF, or None when the line has a bare CR or LF."""
    if not line.endswith(CRLF):
        return None
    text = line[:-2]
    if b"\r" in text or b"\n" in text:
        return None
    return text


class DataProblem(enum.Enum):
    BARE_LINE_ENDING = "bare_line_ending"
    LINE_TOO_LONG = "line_too_long"
    TOO_BIG = "too_big"


class DataReader:
    """Collects one message's DATA until ``<CRLF>.<CRLF>``.

    :meth:`feed` takes bytes as they arrive and returns what follows the terminator
    (pipelined commands) once it is seen. :meth:`result` then gives the message with the
    transparency periods removed (RFC 5321 §4.5.2), or the :class:`DataProblem` that makes
    the whole message unacceptable. Over ``max_size`` the data is dropped as it comes, but
    reading goes on to the terminator so the session stays in step.
    """

    __slots__ = ("_buf", "_dropped", "done", "max_size")

    def __init__(self, max_size: int) -> None:
        # The CRLF that ended the DATA command line, so an empty message (".\r\n" at once)
        # is found by the same search as every other end.
        self._buf = bytearray(CRLF)
        self._dropped = 0
        self.done = False
        self.max_size = max_size

    @property
    def size(self) -> int:
        """Bytes of data received so far (terminator excluded once done)."""
        return len(self._buf) - 2 + self._dropped

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        start = max(0, len(self._buf) - (len(END_OF_DATA) - 1))
        self._buf += chunk
        end = self._buf.find(END_OF_DATA, start)
        if end < 0:
            if self.size > self.max_size:
                # Keep the last four bytes: the terminator may straddle two chunks.
                keep = len(END_OF_DATA) - 1
                self._dropped += len(self._buf) - 2 - keep
                del self._buf[2:-keep]
            return b""
        self.done = True
        rest = bytes(self._buf[end + len(END_OF_DATA) :])
        del self._buf[end + 2 :]  # keep the CRLF that ends the last line
        return rest

    def result(self) -> bytes | DataProblem:
        assert self.done, "result() before the end of data"
        if self._dropped or self.size > self.max_size:
            return DataProblem.TOO_BIG
        raw = self._buf
        lines = raw.count(CRLF)
        if raw.count(b"\r") != lines or raw.count(b"\n") != lines:
            return DataProblem.BARE_LINE_ENDING
        if len(raw) > DATA_LINE_MAX + 4 and max(map(len, raw.split(CRLF))) > DATA_LINE_MAX:
            return DataProblem.LINE_TOO_LONG
        # RFC 5321 §4.5.2: a line starting with a period had one period added; remove it.
        # The leading CRLF makes the first line a line like every other.
        unstuffed = raw.replace(b"\r\n.", CRLF)
        del unstuffed[:2]
        return bytes(unstuffed)
