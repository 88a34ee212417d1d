"""Search criteria, evaluated by the engine (RFC 3501 §6.4.4 semantics, protocol-neutral).

IMAP translates sequence sets and session state (RECENT, NEW, OLD) into :class:`UidIn`
and :class:`Flag` before calling :meth:`Account.search`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal, TypeAlias

DateOp = Literal["before", "on", "since"]


@dataclass(frozen=True, slots=True)
class All:
    pass


@dataclass(frozen=True, slots=True)
class And:
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class Or:
    a: SearchKey
    b: SearchKey


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class UidIn:
    """Inclusive UID ranges; ``(n, n)`` is one UID."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Flag:
    """A system flag (``"\\\\Seen"``) or a keyword; case-insensitive."""

    name: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class Larger:
    n: int


@dataclass(frozen=True, slots=True)
class Smaller:
    n: int


@dataclass(frozen=True, slots=True)
class InternalDate:
    """RFC 3501 BEFORE/ON/SINCE: the internal date's day (UTC), time disregarded."""

    op: DateOp
    day: datetime.date


@dataclass(frozen=True, slots=True)
class InternalTime:
    """RFC 5032 OLDER/YOUNGER: the internal date against an instant (seconds since the
    epoch): ``before`` = at or before it (OLDER), ``since`` = after it (YOUNGER)."""

    op: Literal["before", "since"]
    at: float


@dataclass(frozen=True, slots=True)
class SavedDate:
    """RFC 8514 §4.2 SAVEDBEFORE/SAVEDON/SAVEDSINCE: the save date's day (UTC)."""

    op: DateOp
    day: datetime.date


@dataclass(frozen=True, slots=True)
class FileIs:
    """The message is held by stored file ``file_id`` (RFC 8474 EMAILID: copies share it)."""

    file_id: int


@dataclass(frozen=True, slots=True)
class SentDate:
    """RFC 3501 SENTBEFORE/SENTON/SENTSINCE: the Date header's day as written."""

    op: DateOp
    day: datetime.date


@dataclass(frozen=True, slots=True)
class Header:
    """Case-insensitive substring of a header field's decoded value; "" = field present."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Body:
    """Case-insensitive substring of the decoded text bodies (CTE and charset)."""

    text: str


@dataclass(frozen=True, slots=True)
class Text:
    """Header or body contains the text."""

    text: str


@dataclass(frozen=True, slots=True)
class ModSeq:
    """RFC 7162 §3.1.5 MODSEQ: messages with modseq >= ``at_least``."""

    at_least: int


# RFC 3501 §6.4.4 header keys the index answers without the message (searchdata columns)
INDEXED_HEADERS = frozenset(("from", "to", "cc", "bcc", "subject"))


def reads_messages(key: SearchKey) -> bool:
    """True when evaluating ``key`` reads message files: BODY, TEXT, or HEADER of a field
    other than From/To/Cc/Bcc/Subject. Everything else is one query over the index."""
    if isinstance(key, (Body, Text)):
        return True
    if isinstance(key, Header):
        return key.name.lower() not in INDEXED_HEADERS
    if isinstance(key, And):
        return any(reads_messages(k) for k in key.keys)
    if isinstance(key, Or):
        return reads_messages(key.a) or reads_messages(key.b)
    if isinstance(key, Not):
        return reads_messages(key.key)
    return False


SearchKey: TypeAlias = (
    All
    | And
    | Or
    | Not
    | UidIn
    | Flag
    | Larger
    | Smaller
    | InternalDate
    | InternalTime
    | SavedDate
    | FileIs
    | SentDate
    | Header
    | Body
    | Text
    | ModSeq
)

__all__ = [
    "INDEXED_HEADERS",
    "All",
    "And",
    "Body",
    "DateOp",
    "FileIs",
    "Flag",
    "Header",
    "InternalDate",
    "InternalTime",
    "Larger",
    "ModSeq",
    "Not",
    "Or",
    "SavedDate",
    "SearchKey",
    "SentDate",
    "Smaller",
    "Text",
    "UidIn",
    "reads_messages",
]
