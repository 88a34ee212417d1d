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
_CR, _LF = 0x0D, 0x0A
# RFC 5321 §4.1.1.4: the data ends with a line holding a single period.
END_OF_DATA = b"\r\n.\r\n"
# RFC 5321 §4.5.3.1.4 gives 512 octets for a command line; AUTH's initial response may be
# longer (RFC 4954 §4 allows 12288), so one generous bound applies to every command line.
COMMAND_LINE_MAX = 4096
# RFC 5321 §4.5.3.1.6 / RFC 5322 §2.1.1: a text line is at most 998 octets plus CRLF; a
# line the client stuffed with a transparency period (RFC 5321 §4.5.2) has one more on
# the wire.
DATA_LINE_MAX = 998


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
    (pipelined commands) once it is seen. Each piece is checked (bare CR or LF, line length)
    and unstuffed (RFC 5321 §4.5.2) as it comes, so the work is spread over the reads and
    nothing walks the whole message at the end: :meth:`result` only joins the pieces, or
    gives the :class:`DataProblem` that makes the whole message unacceptable. Once the
    message is known to be refused (over ``max_size``, bare line ending, line too long) its
    data is dropped as it comes, but reading goes on to the terminator so the session stays
    in step.
    """

    __slots__ = (
        "_bare",
        "_col",
        "_dot",
        "_last",
        "_long",
        "_parts",
        "_size",
        "_skip",
        "_tail",
        "done",
        "max_size",
    )

    def __init__(self, max_size: int) -> None:
        # Raw bytes held back: the terminator may straddle two reads. It starts as the CRLF
        # that ended the DATA command line, so an empty message (".\r\n" at once) is found
        # by the same search as every other end; ``_skip`` keeps that CRLF out of the data.
        self._tail = CRLF
        self._skip = len(CRLF)
        self._parts: list[bytes] = []
        self._last = _LF  # the octet before the next piece: a line starts after an LF
        self._col = 0  # octets of the current line seen so far
        self._dot = False  # the current line starts with a (transparency) period
        self._size = 0  # data octets taken so far (the held-back tail excluded)
        self._bare = False
        self._long = False
        self.done = False
        self.max_size = max_size

    @property
    def size(self) -> int:
        """Bytes of data received so far (terminator excluded once done)."""
        return self._size + len(self._tail) - self._skip

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        seg = self._tail + chunk
        end = seg.find(END_OF_DATA)
        if end >= 0:
            self._take(seg, end + 2)  # keep the CRLF that ends the last line
            self._tail = b""
            self.done = True
            return seg[end + len(END_OF_DATA) :]
        # Hold back what may be the start of the terminator, and never end a piece on a CR:
        # whether it is bare depends on the next octet.
        cut = len(seg) - (len(END_OF_DATA) - 1)
        if cut > 0 and seg[cut - 1] == _CR:
            cut -= 1
        if cut <= self._skip:
            self._tail = seg
            return b""
        self._take(seg, cut)
        self._tail = seg[cut:]
        return b""

    def _take(self, seg: bytes, stop: int) -> None:
        """Check and unstuff ``seg[skip:stop]``, a piece of the message as sent."""
        piece = seg[self._skip : stop]
        self._skip = 0
        if not piece:
            return
        self._size += len(piece)
        last, self._last = self._last, piece[-1]
        if self._size > self.max_size:
            self._parts.clear()
            return
        if not self._bare:
            # RFC 5321 §2.3.8: CR and LF only ever come together, as CRLF. A piece never
            # ends on a CR unless the next octet is known not to be LF, so counting is exact.
            crs = piece.count(b"\r")
            if crs != piece.count(b"\n") or (crs and crs != piece.count(CRLF)):
                self._bare = True
        if not self._bare and not self._long:
            self._long = not self._lines_fit(piece)
        if self._bare or self._long:
            self._parts.clear()
            return
        # RFC 5321 §4.5.2: a line starting with a period had one period added; remove it.
        # (Every LF here ends a CRLF, so "\n." is "\r\n." without the search across pieces.)
        if last == _LF and piece[:1] == b".":
            piece = piece[1:]
        if b"\n." in piece:
            piece = piece.replace(b"\n.", b"\n")
        self._parts.append(piece)

    def _lines_fit(self, piece: bytes) -> bool:
        """RFC 5321 §4.5.3.1.6: no line of more than DATA_LINE_MAX octets before its CRLF
        (one more on the wire when it starts with the transparency period).

        The LF ending a line may come at most limit + 1 octets after its start; the search
        jumps to the last LF within that reach, so it takes one step per ~1000 octets
        rather than one per line (a line skipped over is shorter than the limit: the jump's
        first line and its CRLF come before it).
        """
        pos, col, n, dot = 0, self._col, len(piece), self._dot
        while True:
            if col == 0:
                if pos >= n:
                    self._col = 0
                    return True
                dot = piece[pos] == 0x2E
            reach = pos - col + DATA_LINE_MAX + (3 if dot else 2)  # one past the last LF
            nl = piece.rfind(b"\n", pos, reach)
            if nl < 0:
                if n >= reach:
                    return False
                self._col, self._dot = col + n - pos, dot
                return True
            pos, col = nl + 1, 0

    @property
    def problem(self) -> DataProblem | None:
        """Why the message will be refused, as far as the data so far shows (or None)."""
        if self._size > self.max_size:
            return DataProblem.TOO_BIG
        if self._bare:
            return DataProblem.BARE_LINE_ENDING
        if self._long:
            return DataProblem.LINE_TOO_LONG
        return None

    def result(self) -> bytes | DataProblem:
        """The message, or its problem. Only a join is left to do: a large message's
        join may run in a thread (``bytes.join`` drops the GIL for large copies)."""
        assert self.done, "result() before the end of data"
        problem = self.problem
        if problem is not None:
            return problem
        parts, self._parts = self._parts, []
        return b"".join(parts)
