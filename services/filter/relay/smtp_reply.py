"""SMTP replies as the relay's client reads them (RFC 5321 §4.2): a pure, incremental
parser. Bytes go in as they arrive from the socket, in pieces of any size; complete
replies come out in order — several at once when the server answers a pipelined group
(RFC 2920 §3.2), none while a reply is still partial.

A reply line is three digits, then ``-`` (more lines follow) or a space (the last line),
then text (RFC 5321 §4.2.1); every line of one reply carries the same code. A bare
``250`` with no text is the last line as well. Lines end in CRLF; a bare LF is taken too
(RFC 5321 §4.1.1 asks receivers to be liberal here). Anything else — a line without a
code, a code that changes mid-reply, a line longer than :data:`MAX_LINE`, more than
:data:`MAX_LINES` lines — raises :class:`ReplyError`: the session cannot be trusted to
stay in step after that.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 5321 §4.5.3.1.5 sets 512 octets for a reply line; real servers exceed it (long
# EHLO keywords, wrapped diagnostics), so the parser allows much more but stays bounded.
MAX_LINE = 8192
MAX_LINES = 256


class ReplyError(ValueError):
    """The server sent something that is not an SMTP reply."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def temporary(self) -> bool:
        return self.code < 500

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def enhanced(self) -> str:
        """The enhanced status code (RFC 3463, RFC 2034 §4) that starts the first line, if
        any, e.g. ``5.1.1``; it must agree with the reply's class."""
        first = self.lines[0].split(" ", 1)[0] if self.lines else ""
        parts = first.split(".")
        if (
            len(parts) == 3
            and parts[0] == str(self.code)[0]
            and all(p.isdigit() and 0 < len(p) <= 3 for p in parts)
        ):
            return first
        return ""

    @property
    def message(self) -> str:
        """The text without the enhanced code, lines joined by a space."""
        text = " ".join(self.lines)
        enhanced = self.enhanced
        if enhanced:
            text = text[len(enhanced) :].lstrip()
        return text

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".strip()


class ReplyParser:
    """Feed it bytes; it returns the replies they complete."""

    def __init__(self) -> None:
        self._buffer = b""
        self._code = 0  # code of the reply in progress, 0 when none
        self._lines: list[str] = []

    @property
    def partial(self) -> bool:
        """Bytes of a reply that has not ended yet are waiting."""
        return bool(self._buffer or self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        start = 0
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            reply = self._line(line)
            if reply is not None:
                replies.append(reply)
        self._buffer = buffer[start:]
        if len(self._buffer) > MAX_LINE:
            raise ReplyError("reply line too long")
        return replies

    def _line(self, line: bytes) -> Reply | None:
        if len(line) > MAX_LINE:
            raise ReplyError("reply line too long")
        digits = line[:3]
        if len(digits) != 3 or not digits.isdigit() or not b"2" <= digits[:1] <= b"5":
            raise ReplyError(f"not a reply line: {line[:40]!r}")
        code = int(digits)
        sep = line[3:4]
        if sep not in (b"", b" ", b"-"):
            raise ReplyError(f"not a reply line: {line[:40]!r}")
        if self._code and code != self._code:
            raise ReplyError(f"reply code changed from {self._code} to {code} mid-reply")
        self._code = code
        self._lines.append(line[4:].decode("utf-8", "replace"))
        if len(self._lines) > MAX_LINES:
            raise ReplyError("reply has too many lines")
        if sep == b"-":
            return None
        reply = Reply(code, tuple(self._lines))
        self._code, self._lines = 0, []
        return reply


def extensions(ehlo: Reply) -> dict[str, str]:
    """The service extensions an EHLO reply names (RFC 5321 §4.1.1.1): keyword (upper
    case) → its parameters; the first line is the server's greeting, not an extension."""
    out: dict[str, str] = {}
    for line in ehlo.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            out[keyword.upper()] = params.strip()
    return out
