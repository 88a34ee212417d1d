"""Evaluating search criteria against one stored message (RFC 3501 §6.4.4 semantics).

The reference evaluation: :mod:`mailcore.mailstore.sqlsearch` turns criteria into SQL over
the index and calls :func:`matches` only for what needs the message itself (BODY, TEXT,
header fields without a column); tests check that both agree. Flags, sizes, dates and UIDs
come from the index; address and subject text from the parse cache; other header fields
and bodies from the message file, decoded (CTE and charset) on the fly. Comparisons are
case-insensitive substring matches.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailcore import message
from mailcore.mailstore import flags as flagset
from mailcore.mailstore import layout
from mailcore.mailstore import search as s
from mailcore.mailstore.errors import SearchStopped
from mailcore.mailstore.messages import select_uids
from mailcore.mailstore.reads import load_parsed
from mailcore.message import BodyPart, ParsedMessage

CACHED_HEADERS = s.INDEXED_HEADERS


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
    path: str | Path
    hdr_size: int | None = None  # the header's size when known without ``parsed``
    save_date: float | None = None  # RFC 8514
    _data: bytes | None = None
    _head: bytes | None = None
    _header_text: str | None = None
    _fields: list[tuple[str, str]] | None = field(default=None)

    def data(self) -> bytes:
        if self._data is None:
            try:
                with open(self.path, "rb") as fh:
                    self._data = fh.read()
            except OSError:
                self._data = b""
        return self._data

    def header_size(self) -> int:
        if self.parsed is not None:
            return self.parsed.header_size
        if self.hdr_size is not None:
            return self.hdr_size
        return len(self.data())

    def head(self) -> bytes:
        """The header block; only that much of the file is read when its size is known."""
        if self._head is None:
            if self._data is None and (self.parsed is not None or self.hdr_size is not None):
                try:
                    with open(self.path, "rb") as fh:
                        self._head = fh.read(self.header_size())
                except OSError:
                    self._head = b""
            else:
                self._head = self.data()[: self.header_size()]
        return self._head

    def fields(self) -> list[tuple[str, str]]:
        if self._fields is None:
            self._fields = message.header_fields(self.head())
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
            raw = message.decode_qp(raw)  # RFC 2045 §6.7
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


def _compare(op: s.DateOp, value: int, target: int) -> bool:
    if op == "before":
        return value < target
    if op == "on":
        return value == target
    return value >= target


def _compare_day(op: s.DateOp, value: int, day: datetime.date) -> bool:
    return _compare(op, value, day.year * 10000 + day.month * 100 + day.day)


_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def epoch_day(day: datetime.date) -> int:
    """Days from 1970-01-01 to ``day`` (UTC)."""
    return day.toordinal() - _EPOCH_ORDINAL


def internal_day(epoch: float) -> int:
    """The UTC day of an internal date, as days since 1970-01-01: the second it falls in
    decides (so ``internal_date < epoch_day(d) * 86400`` is exactly "before d")."""
    return math.floor(epoch) // 86400


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
    s.InternalDate: lambda k, c: _compare(k.op, internal_day(c.internal_date), epoch_day(k.day)),
    s.SavedDate: lambda k, c: (
        c.save_date is not None and _compare(k.op, internal_day(c.save_date), epoch_day(k.day))
    ),
    s.FileIs: lambda k, c: c.file_id == k.file_id,
    s.InternalTime: lambda k, c: (
        c.internal_date <= k.at if k.op == "before" else c.internal_date > k.at
    ),
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


def scan(
    conn: sqlite3.Connection,
    msgs_dir: str,
    mailbox_id: int,
    key: s.SearchKey,
    uids: Sequence[int] | None = None,
    *,
    stopped: Callable[[], bool] | None = None,
) -> list[int]:
    """The reference search: every message of the mailbox through :func:`matches`, with
    its parse cache loaded when the criteria need it. Slow (a Python object and a JSON
    decode per message); the engine uses :func:`mailcore.mailstore.sqlsearch.run` and
    falls back to this only for criteria SQLite cannot take."""
    rows = select_uids(
        conn,
        "uid, modseq, flags, internal_date, size, file_id, hdr_size, save_date",
        mailbox_id,
        uids,
    )
    cache = load_parsed(conn, [r[5] for r in rows]) if needs_parsed(key) else {}
    found = []
    for uid, modseq, encoded, date, size, fid, hdr_size, saved in rows:
        if stopped is not None and stopped():
            raise SearchStopped("search stopped")
        cand = Candidate(
            uid,
            modseq,
            flagset.decode(encoded),
            date,
            size,
            fid,
            cache.get(fid),
            layout.message_file(msgs_dir, fid),
            hdr_size=hdr_size,
            save_date=saved,
        )
        if matches(key, cand):
            found.append(uid)
    return found
