"""The IMAP lexical layer (RFC 3501 §4, §9): a cursor over one command's bytes.

A command arrives as one buffer: the command line(s) with every literal's octets in place
after its ``{n}`` / ``{n+}`` CRLF (the framing layer reads them). Nothing here touches a
socket; every failure is a :class:`ParseError` subclass.
"""

from __future__ import annotations

import re

from services.store.imap import utf7
from services.store.imap.commands import SeqSet

MAX_LINE = 64 * 1024  # one command line (without literal octets)
MAX_DEPTH = 32  # parenthesis nesting (SEARCH, FETCH, lists)

_CTL = set(range(0x00, 0x20)) | {0x7F}
# RFC 3501 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
#   quoted-specials / resp-specials
ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | _CTL | frozenset(range(0x80, 0x100))
ATOM_CHARS = frozenset(range(256)) - ATOM_SPECIALS
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
LIST_CHARS = ASTRING_CHARS | {ord("%"), ord("*")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}

_LITERAL_SUFFIX = re.compile(rb"~?\{(\d{1,20})(\+?)\}$")


class ParseError(Exception):
    """Base of every parser failure; ``tag`` is set once the tag was read."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag


class BadSyntax(ParseError):
    pass


class UnknownCommand(ParseError):
    pass


class TooDeep(ParseError):
    pass


class LineTooLong(ParseError):
    pass


class BadCharset(ParseError):
    """SEARCH CHARSET names a charset we do not know (RFC 3501 §6.4.4 [BADCHARSET])."""


def literal_suffix(line: bytes) -> tuple[int, bool] | None:
    """``(size, synchronizing)`` when a line (without CRLF) ends with a literal announcement."""
    m = _LITERAL_SUFFIX.search(line)
    if m is None:
        return None
    return int(m.group(1)), not m.group(2)


def tag_of(line: bytes) -> str | None:
    """The tag of a command line, if it has a well-formed one (for early refusals)."""
    end = line.find(b" ")
    tag = line if end < 0 else line[:end]
    if not tag or any(c not in TAG_CHARS for c in tag):
        return None
    return tag.decode("ascii")


class Cursor:
    __slots__ = ("buf", "depth", "pos", "tag", "utf8")

    def __init__(self, buf: bytes, *, utf8: bool = False) -> None:
        self.buf = buf
        self.pos = 0
        self.depth = 0
        self.tag: str | None = None
        # RFC 9051 §5.1: once IMAP4rev2 is enabled, mailbox names are UTF-8, not UTF-7
        self.utf8 = utf8

    # --- basics ----------------------------------------------------------------------------
    def error(self, message: str) -> BadSyntax:
        return BadSyntax(message, self.tag)

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def peek(self) -> int:
        return self.buf[self.pos] if self.pos < len(self.buf) else -1

    def peek_is(self, b: bytes) -> bool:
        return self.buf.startswith(b, self.pos)

    def peek_word(self, word: bytes) -> bool:
        """Case-insensitive look-ahead for ``word`` (no consumption)."""
        end = self.pos + len(word)
        return self.buf[self.pos : end].upper() == word

    def take(self, b: bytes) -> bool:
        if self.buf.startswith(b, self.pos):
            self.pos += len(b)
            return True
        return False

    def take_word(self, word: bytes) -> bool:
        if self.peek_word(word):
            self.pos += len(word)
            return True
        return False

    def expect(self, b: bytes) -> None:
        if not self.take(b):
            raise self.error(f"expected {b.decode()!r}")

    def sp(self) -> None:
        self.expect(b" ")

    def end(self) -> None:
        if not self.at_end():
            raise self.error("unexpected characters at end of command")

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TooDeep("too deeply nested", self.tag)

    def open(self) -> None:
        self.expect(b"(")
        self.nest()

    def close(self) -> None:
        self.expect(b")")
        self.depth -= 1

    # --- tokens ------------------------------------------------------------------------------
    def run(self, chars: frozenset[int] | set[int]) -> bytes:
        start = self.pos
        buf = self.buf
        n = len(buf)
        while self.pos < n and buf[self.pos] in chars:
            self.pos += 1
        return buf[start : self.pos]

    def atom(self) -> str:
        a = self.run(ATOM_CHARS)
        if not a:
            raise self.error("expected an atom")
        return a.decode("ascii")

    def tag_token(self) -> str:
        t = self.run(TAG_CHARS)
        if not t:
            raise BadSyntax("missing or invalid tag")
        return t.decode("ascii")

    def number(self, *, nonzero: bool = False, bits: int = 32) -> int:
        start = self.pos
        while self.pos < len(self.buf) and 0x30 <= self.buf[self.pos] <= 0x39:
            self.pos += 1
        digits = self.buf[start : self.pos]
        if not digits or len(digits) > 20:
            raise self.error("expected a number")
        value = int(digits)
        if value >= 1 << bits or (nonzero and value == 0):
            raise self.error("number out of range")
        return value

    def quoted(self) -> bytes:
        self.expect(b'"')
        out = bytearray()
        buf = self.buf
        while True:
            if self.pos >= len(buf):
                raise self.error("unterminated quoted string")
            c = buf[self.pos]
            self.pos += 1
            if c == 0x22:
                return bytes(out)
            if c == 0x5C:
                if self.pos >= len(buf) or buf[self.pos] not in b'"\\':
                    raise self.error("bad escape in quoted string")
                c = buf[self.pos]
                self.pos += 1
            elif c in (0x0D, 0x0A, 0x00):
                raise self.error("CR, LF or NUL in quoted string")
            out.append(c)

    def literal(self, *, binary: bool = False) -> bytes:
        """A literal; ``binary`` also accepts RFC 3516 literal8 (``~{n}``, NUL allowed)."""
        if binary:
            self.take(b"~")
        self.expect(b"{")
        n = self.number(bits=64)
        self.take(b"+")
        self.expect(b"}\r\n")
        if self.pos + n > len(self.buf):
            raise self.error("literal shorter than announced")
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        raise self.error("expected a string")

    def astring(self) -> bytes:
        c = self.peek()
        if c in (0x22, 0x7B):
            return self.string()
        a = self.run(ASTRING_CHARS)
        if not a:
            raise self.error("expected a string or atom")
        return a

    def nstring(self) -> bytes | None:
        if self.take_word(b"NIL"):
            return None
        return self.string()

    def text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("invalid UTF-8") from None

    def astr(self) -> str:
        return self.text(self.astring())

    def mailbox(self) -> str:
        """RFC 3501 §5.1: INBOX is case-insensitive; others are modified UTF-7."""
        raw = self.astring()
        return self.decode_mailbox(raw)

    def decode_mailbox(self, raw: bytes) -> str:
        if raw.upper() == b"INBOX":
            return "INBOX"
        if self.utf8:
            return self.text(raw)
        try:
            wire = raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.error("mailbox name is not valid modified UTF-7") from None
        try:
            return utf7.decode(wire)
        except utf7.Utf7Error:
            if all(0x20 <= ord(ch) <= 0x7E for ch in wire):
                return utf7.Undecodable.of(wire)  # well-formed, names no mailbox
            raise self.error("mailbox name is not valid modified UTF-7") from None

    def list_mailbox(self) -> str:
        c = self.peek()
        if c in (0x22, 0x7B):
            raw = self.string()
        else:
            raw = self.run(LIST_CHARS)
            if not raw:
                raise self.error("expected a mailbox pattern")
        return self.decode_mailbox(raw)

    def flag(self) -> str:
        """RFC 3501 §9 flag: ``\\Atom`` (system or extension flag) or a keyword atom."""
        if self.take(b"\\"):
            return "\\" + self.atom()
        return self.atom()

    def flag_list(self) -> tuple[str, ...]:
        self.open()
        flags: list[str] = []
        if not self.take(b")"):
            flags.append(self.flag())
            while self.take(b" "):
                flags.append(self.flag())
            self.expect(b")")
        self.depth -= 1
        return tuple(flags)

    def sequence_set(self) -> SeqSet:
        if self.take(b"$"):
            return SeqSet((), saved=True)
        return SeqSet(self.seqset())

    def seqset(self) -> tuple[tuple[int | None, int | None], ...]:
        ranges: list[tuple[int | None, int | None]] = []
        while True:
            a = self._seq_number()
            b = a
            if self.take(b":"):
                b = self._seq_number()
            ranges.append((a, b))
            if not self.take(b","):
                return tuple(ranges)

    def _seq_number(self) -> int | None:
        if self.take(b"*"):
            return None
        return self.number(nonzero=True)
