"""Wire forms of IMAP data (RFC 3501 §4): quoted strings, literals, NIL, flag lists,
mailbox names, and the status responses. Everything returns bytes ready to send."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from services.store.imap import utf7
from services.store.imap.lexer import ASTRING_CHARS

_QUOTED_BAD = re.compile(rb"[\r\n\x00\x80-\xff]")
_QUOTED_BAD_UTF8 = re.compile(rb"[\r\n\x00]")  # RFC 9051 §4.3: UTF-8 in quoted strings


def literal(data: bytes) -> bytes:
    """RFC 3501 §4.3: CHAR8 excludes NUL; one found in data is sent as 0x80."""
    if b"\x00" in data:
        data = data.replace(b"\x00", b"\x80")
    return b"{%d}\r\n" % len(data) + data


def string(data: bytes, utf8: bool = False) -> bytes:
    """A quoted string when it can be one (short, 7-bit — or UTF-8 under IMAP4rev2 —,
    no CR/LF), else a literal."""
    if len(data) > 1024 or (_QUOTED_BAD_UTF8 if utf8 else _QUOTED_BAD).search(data):
        return literal(data)
    if b"\\" in data or b'"' in data:
        data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + data + b'"'


def text(value: str) -> bytes:
    return string(value.encode("utf-8", "surrogateescape"))


def nstring(value: str | bytes | None, utf8: bool = False) -> bytes:
    if value is None:
        return b"NIL"
    data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    return string(data, utf8)


@functools.lru_cache(maxsize=4096)  # a session names the same few mailboxes again and again
def mailbox(name: str, utf8: bool = False) -> bytes:
    """RFC 3501 §5.1.3: names go out in modified UTF-7 (or UTF-8 once UTF8=ACCEPT is on),
    as an atom when they are one, else quoted."""
    wire = (name if utf8 else utf7.encode(name)).encode("utf-8")
    if wire and all(b in ASTRING_CHARS for b in wire) and wire.upper() != b"NIL":
        return wire
    return string(wire, utf8)


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(flags).encode("ascii", "replace") + b")"


def number_list(ns: Iterable[int]) -> bytes:
    return " ".join(map(str, ns)).encode()


def seq_set(ns: Iterable[int]) -> bytes:
    """Compact sequence-set of sorted integers, e.g. ``1:3,7,9:10``."""
    out: list[str] = []
    start = prev = -2
    for n in ns:
        if n == prev + 1:
            prev = n
            continue
        if start >= 0:
            out.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = n
    if start >= 0:
        out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out).encode()


def tagged(tag: str, status: str, message: str) -> bytes:
    return f"{tag} {status} {message}\r\n".encode()


def untagged(line: str | bytes) -> bytes:
    if isinstance(line, str):
        line = line.encode()
    return b"* " + line + b"\r\n"
