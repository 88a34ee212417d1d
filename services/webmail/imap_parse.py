"""IMAP response data as values (RFC 3501 §4, §7): pure functions, no sockets.

aioimaplib hands back a response as a list of lines with each literal as a separate
item; :func:`join_responses` puts each untagged response back together, and
:func:`parse` turns its text into nested Python values: ``bytes`` for atoms, strings
and literals, ``None`` for NIL, ``list`` for parenthesised lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Value = bytes | None | list["Value"]

_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}$")
_ATOM_END = b' ()\r\n"{'


class ParseError(ValueError):
    """Response data that is not valid IMAP syntax."""


def join_responses(lines: Sequence[bytes | bytearray]) -> list[bytes]:
    """aioimaplib's lines → one wire-format ``bytes`` per response, literals inline.

    A line ending in ``{n}`` is followed by the literal, then by the rest of the same
    response (RFC 3501 §4.3); any other line starts a new response."""
    out: list[bytes] = []
    cur: bytearray | None = None
    want_literal = False
    after_literal = False
    for item in lines:
        raw = bytes(item)
        if want_literal and cur is not None:
            cur += b"\r\n" + raw
            want_literal, after_literal = False, True
            continue
        if after_literal and cur is not None:
            cur += raw
        else:
            if cur is not None:
                out.append(bytes(cur))
            cur = bytearray(raw)
        after_literal = False
        want_literal = _LITERAL_AT_END.search(raw) is not None
    if cur is not None:
        out.append(bytes(cur))
    return out


def parse(data: bytes) -> list[Value]:
    """Every value in ``data`` (a response without its tag), in order."""
    values, pos = _parse_seq(data, 0)
    if pos != len(data):
        raise ParseError(f"trailing data at {pos}")
    return values


_SPACE, _OPEN, _CLOSE, _DQUOTE, _BRACE, _BACKSLASH = 0x20, 0x28, 0x29, 0x22, 0x7B, 0x5C
# An atom's characters up to a delimiter or a bracket; brackets are handled in _atom.
_ATOM_RUN = re.compile(rb'[^ ()\r\n"{\[\]]*')
_BRACKETS = re.compile(rb"[\[\]]")


def _parse_seq(data: bytes, pos: int) -> tuple[list[Value], int]:
    # Scanning by index and regex, never a byte at a time through slices: a list page parses
    # fifty FETCH responses per request. Nesting is kept on a stack, not in recursion: a
    # THREAD answer nests as deep as a conversation's branches.
    out: list[Value] = []
    outer: list[list[Value]] = []
    n = len(data)
    while pos < n:
        c = data[pos]
        if c == _SPACE:
            pos += 1
        elif c == _CLOSE:
            if not outer:
                raise ParseError(f"unbalanced ) at {pos}")
            inner, out = out, outer.pop()
            out.append(inner)
            pos += 1
        elif c == _OPEN:
            outer.append(out)
            out = []
            pos += 1
        elif c == _DQUOTE:
            s, pos = _quoted(data, pos + 1)
            out.append(s)
        elif c == _BRACE:
            s, pos = _literal(data, pos)
            out.append(s)
        else:
            atom, pos = _atom(data, pos)
            out.append(None if len(atom) == 3 and atom.upper() == b"NIL" else atom)
    if outer:
        raise ParseError("unclosed (")
    return out, pos


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    # RFC 3501 §9 quoted: backslash escapes only \\ and \"
    end = data.find(b'"', pos)
    if end < 0:
        raise ParseError("unterminated quoted string")
    if data.find(b"\\", pos, end) < 0:  # the common case: no escapes
        return data[pos:end], end + 1
    out = bytearray()
    n = len(data)
    while pos < n:
        c = data[pos]
        if c == _BACKSLASH and pos + 1 < n:
            out.append(data[pos + 1])
            pos += 2
        elif c == _DQUOTE:
            return bytes(out), pos + 1
        else:
            out.append(c)
            pos += 1
    raise ParseError("unterminated quoted string")


def _literal(data: bytes, pos: int) -> tuple[bytes, int]:
    end = data.find(b"}", pos)
    if end < 0:
        raise ParseError("bad literal")
    count = data[pos + 1 : end].rstrip(b"+")
    if not count.isdigit() or data[end + 1 : end + 3] != b"\r\n":
        raise ParseError("bad literal")
    start = end + 3
    size = int(count)
    if start + size > len(data):
        raise ParseError("literal runs past the data")
    return data[start : start + size], start + size


def _atom(data: bytes, pos: int) -> tuple[bytes, int]:
    # An atom may carry a section in brackets with spaces inside: BODY[HEADER.FIELDS (A B)]
    start = pos
    n = len(data)
    depth = 0
    while True:
        m = _ATOM_RUN.match(data, pos)
        pos = m.end() if m else pos
        if pos >= n:
            break
        c = data[pos]
        if c == 0x5B:  # [
            depth += 1
        elif c == 0x5D:  # ]
            depth -= 1
        elif depth > 0:  # a delimiter inside brackets belongs to the atom
            nxt = _BRACKETS.search(data, pos)
            if nxt is None:
                pos = n
                break
            pos = nxt.start()
            continue
        else:
            break
        pos += 1
    if pos == start:
        raise ParseError(f"unexpected {data[pos : pos + 1]!r} at {pos}")
    return data[start:pos], pos


def pairs(items: Iterable[Value]) -> dict[bytes, Value]:
    """A FETCH or STATUS attribute list ``(K1 V1 K2 V2)`` → ``{K1.upper(): V1, …}``."""
    seq = list(items)
    out: dict[bytes, Value] = {}
    for i in range(0, len(seq) - 1, 2):
        key = seq[i]
        if isinstance(key, bytes):
            out[key.upper()] = seq[i + 1]
    return out


def text(v: Value) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else ""


def number(v: Value) -> int:
    return int(v) if isinstance(v, bytes) and v.isdigit() else 0
