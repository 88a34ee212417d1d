"""The journal table: records to rows and back, reads by position.

A row is ``(seq, kind, mailbox_id, at, data)``: ``data`` is a JSON array of the record's
other fields in declaration order (flag sets as sorted lists, UID lists as lists); a field
added later at the end, with a default, may be missing from older rows. Only
this module knows the row format; everything else speaks :mod:`records`.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from mailcore.mailstore import flags as flagset
from mailcore.mailstore.errors import ChangeLogTruncated
from mailcore.mailstore.records import RECORD_TYPES, Record, mailbox_of

_HEAD = ("seq", "at", "mailbox_id")
_BY_KIND: dict[str, type[Record]] = {cls.kind: cls for cls in RECORD_TYPES}
# per kind: the names of the fields kept in ``data`` and whether the record has mailbox_id
_FIELDS: dict[str, tuple[str, ...]] = {
    cls.kind: tuple(f.name for f in dataclasses.fields(cls) if f.name not in _HEAD)
    for cls in RECORD_TYPES
}
_HAS_MAILBOX: dict[str, bool] = {
    cls.kind: any(f.name == "mailbox_id" for f in dataclasses.fields(cls)) for cls in RECORD_TYPES
}
_dumps = json.JSONEncoder(separators=(",", ":")).encode

Row = tuple[int, str, int | None, float, str]
INSERT = "INSERT INTO journal (seq, kind, mailbox_id, at, data) VALUES (?, ?, ?, ?, ?)"
COLUMNS = "seq, kind, mailbox_id, at, data"


def _plain(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def encode(rec: Record) -> Row:
    kind = rec.kind
    data = [_plain(getattr(rec, name)) for name in _FIELDS[kind]]
    return (rec.seq, kind, mailbox_of(rec), rec.at, _dumps(data))


def decode(row: Row) -> Record:
    seq, kind, mailbox_id, at, data = row
    cls = _BY_KIND[kind]
    values = json.loads(data)
    names = _FIELDS[kind]
    if len(values) > len(names):
        raise ValueError(f"a {kind} record with {len(values)} fields, not {len(names)}")
    # a row written before a trailing field was added: the field's default (e.g. the
    # ``uids`` of mailbox-delete)
    fields: dict[str, Any] = dict(zip(names[: len(values)], values, strict=True))
    if "flags" in fields:
        fields["flags"] = flagset.decode(" ".join(fields["flags"]))  # shares equal sets
    if "uids" in fields:
        fields["uids"] = tuple(fields["uids"])
    if _HAS_MAILBOX[kind]:
        fields["mailbox_id"] = mailbox_id
    return cls(seq=seq, at=at, **fields)


def write(conn: sqlite3.Connection, records: Iterable[Record]) -> None:
    conn.executemany(INSERT, [encode(r) for r in records])


def first_kept(conn: sqlite3.Connection) -> int | None:
    """The oldest record still in the journal (None: empty)."""
    first: int | None = conn.execute("SELECT min(seq) FROM journal").fetchone()[0]
    return first


def read(
    conn: sqlite3.Connection,
    after: int,
    *,
    mailbox_id: int | None = None,
    upto: int | None = None,
    limit: int | None = None,
) -> list[Record]:
    """Records with ``seq > after`` (and ``<= upto``; of ``mailbox_id``; at most ``limit``),
    ascending. :class:`ChangeLogTruncated` when some of them were pruned already."""
    first = first_kept(conn)
    if first is not None and after < first - 1:
        raise ChangeLogTruncated(f"journal records before {first} are no longer kept")
    if first is None:
        (head,) = conn.execute("SELECT change_seq FROM state WHERE id = 1").fetchone()
        if after < head:
            raise ChangeLogTruncated(f"journal records up to {head} are no longer kept")
    sql = f"SELECT {COLUMNS} FROM journal WHERE seq > ?"  # noqa: S608 (constants)
    args: list[int] = [after]
    if upto is not None:
        sql += " AND seq <= ?"
        args.append(upto)
    if mailbox_id is not None:
        sql += " AND mailbox_id = ?"
        args.append(mailbox_id)
    sql += " ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [decode(r) for r in conn.execute(sql, args)]


__all__ = ["COLUMNS", "INSERT", "decode", "encode", "first_kept", "read", "write"]
