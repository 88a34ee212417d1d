"""Evaluating search criteria against stored messages (RFC 3501 §6.4.4 semantics).

Flags, sizes, dates and UIDs come from the index; address and subject text from the
parse cache; other header fields and bodies from the message file, decoded (CTE and
charset) on the fly. Comparisons are case-insensitive substring matches.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import quopri
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailcore import message
from mailcore.mailstore import flags as flagset
from mailcore.mailstore import search as s
from mailcore.message import BodyPart, ParsedMessage

CACHED_HEADERS = frozenset(("from", "to", "cc", "bcc", "subject"))


def _needs(key: s.SearchKey, kinds: tuple[type, ...]) -> bool:
    if isinstance(key, kinds):
        return True
    if isinstance(key, s.And):
        return any(_needs(k, kinds) for k in key.keys)
    if isinstance(key, s.Or):
        return _needs(key.a, kinds) or _needs(key.b, kinds)
    if isinstance(key, s.Not):
        return _needs(key.key, kinds)
    return False


def needs_parsed(key: s.SearchKey) -> bool:
    return _needs(key, (s.SentDate, s.Header, s.Body, s.Text))


@dataclass(slots=True)
class Candidate:
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: float
    size: int
    file_id: int
    parsed: ParsedMessage | None
    path: Path
    _data: bytes | None = None
    _header_text: str | None = None
    _fields: list[tuple[str, str]] | None = field(default=None)

    def data(self) -> bytes:
        if self._data is None:
            try:
                self._data = self.path.read_bytes()
            except OSError:
                self._data = b""
        return self._data

    def header_size(self) -> int:
        return self.parsed.header_size if self.parsed else len(self.data())

    def fields(self) -> list[tuple[str, str]]:
        if self._fields is None:
            self._fields = message.header_fields(self.data()[: self.header_size()])
        return self._fields

    def header_text(self) -> str:
        if self._header_text is None:
            self._header_text = "\n".join(
                f"{k}: {message.decode_words(v)}" for k, v in self.fields()
            ).casefold()
        return self._header_text


def _decode_body(data: bytes, part: BodyPart) -> str:
    raw = data[part.body_start : part.body_end]
    try:
        if part.encoding == "base64":
            raw = base64.b64decode(raw, validate=False)
        elif part.encoding == "quoted-printable":
            raw = quopri.decodestring(raw)
    except (binascii.Error, ValueError):
        pass
    return message.decode_text(raw, part.param("charset"))


def _texts(data: bytes, part: BodyPart) -> list[str]:
    """Decoded text of every text part (and of embedded messages' text parts)."""
    if part.parts:
        out: list[str] = []
        for child in part.parts:
            out.extend(_texts(data, child))
        return out
    if part.message is not None:
        return _texts(data, part.message[1])
    if part.type == "text":
        return [_decode_body(data, part)]
    return []


def _body_contains(c: Candidate, needle: str) -> bool:
    data = c.data()
    structure = c.parsed.structure if c.parsed else message.parse(data).structure
    return any(needle in text.casefold() for text in _texts(data, structure))


def _header_contains(c: Candidate, name: str, needle: str) -> bool:
    name = name.lower()
    if name in CACHED_HEADERS and c.parsed is not None:
        value = c.parsed.decoded.get(name)
        if value is not None:
            return needle in value.casefold()
        if needle:
            return False
    for key, value in c.fields():
        if key == name and needle in message.decode_words(value).casefold():
            return True
    return False


def _compare_day(op: s.DateOp, value: int, day: datetime.date) -> bool:
    target = day.year * 10000 + day.month * 100 + day.day
    if op == "before":
        return value < target
    if op == "on":
        return value == target
    return value >= target


def _internal_day(epoch: float) -> int:
    d = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return d.year * 10000 + d.month * 100 + d.day


def matches(key: s.SearchKey, c: Candidate) -> bool:
    handler = _HANDLERS.get(type(key))
    if handler is None:
        raise TypeError(f"unknown search key {key!r}")
    return handler(key, c)


_HANDLERS: dict[type, Callable[..., bool]] = {
    s.All: lambda k, c: True,
    s.And: lambda k, c: all(matches(x, c) for x in k.keys),
    s.Or: lambda k, c: matches(k.a, c) or matches(k.b, c),
    s.Not: lambda k, c: not matches(k.key, c),
    s.UidIn: lambda k, c: any(lo <= c.uid <= hi for lo, hi in k.ranges),
    s.Flag: lambda k, c: flagset.has(c.flags, k.name) == k.present,
    s.Larger: lambda k, c: c.size > k.n,
    s.Smaller: lambda k, c: c.size < k.n,
    s.ModSeq: lambda k, c: c.modseq >= k.at_least,
    s.InternalDate: lambda k, c: _compare_day(k.op, _internal_day(c.internal_date), k.day),
    s.SentDate: lambda k, c: (
        c.parsed is not None
        and c.parsed.sent_day is not None
        and _compare_day(k.op, c.parsed.sent_day, k.day)
    ),
    s.Header: lambda k, c: _header_contains(c, k.name, k.text.casefold()),
    s.Body: lambda k, c: _body_contains(c, k.text.casefold()),
    s.Text: lambda k, c: (
        k.text.casefold() in c.header_text() or _body_contains(c, k.text.casefold())
    ),
}
