"""What the index keeps per message so SEARCH needs no message file and no parse cache.

RFC 3501 §6.4.4 FROM/TO/CC/BCC/SUBJECT compare a case-insensitive substring of the
decoded (RFC 2047) field; SENTBEFORE/SENTON/SENTSINCE the Date header's own day. The
message is parsed once when it is stored; these values go into columns of the ``messages``
row (see :mod:`mailcore.mailstore.schema`), case-folded, so a search is a ``WHERE``
clause over the index (:mod:`mailcore.mailstore.sqlsearch`).
"""

from __future__ import annotations

from typing import NamedTuple

from mailcore.mailstore import sortkeys
from mailcore.mailstore.search import INDEXED_HEADERS
from mailcore.message import ParsedMessage

# RFC 3501 §6.4.4 header keys kept in columns: search key name -> column
HEADER_COLUMNS = {
    "from": "s_from",
    "to": "s_to",
    "cc": "s_cc",
    "bcc": "s_bcc",
    "subject": "s_subject",
}
assert set(HEADER_COLUMNS) == INDEXED_HEADERS
SEARCH_COLUMNS = ("hdr_size", "s_from", "s_to", "s_cc", "s_bcc", "s_subject", "sent_day")
# version 4: SORT / THREAD keys (mailcore.mailstore.sortkeys)
SORT_COLUMNS = sortkeys.SortKeys._fields
COLUMNS = SEARCH_COLUMNS + SORT_COLUMNS


class SearchData(NamedTuple):
    """The values of :data:`COLUMNS`: header size in bytes, the case-folded decoded text of
    each header field (None when the message has no such field, "" when it is present
    without text) and the sent day as yyyymmdd (None without a readable Date)."""

    hdr_size: int | None
    s_from: str | None
    s_to: str | None
    s_cc: str | None
    s_bcc: str | None
    s_subject: str | None
    sent_day: int | None
    k_subject: str | None = None
    k_reply: int | None = None
    k_from: str | None = None
    k_to: str | None = None
    k_cc: str | None = None
    k_dfrom: str | None = None
    k_dto: str | None = None
    sent_at: float | None = None
    msg_id: str | None = None
    refs: str | None = None


NO_DATA = SearchData(None, None, None, None, None, None, None)
assert SearchData._fields == COLUMNS


def _fold(value: str | None) -> str | None:
    return None if value is None else value.casefold()


def of(p: ParsedMessage, data: bytes) -> SearchData:
    """The columns of a message: ``p`` parsed from the stored bytes ``data``."""
    d = p.decoded
    return SearchData(
        p.header_size,
        _fold(d.get("from")),
        _fold(d.get("to")),
        _fold(d.get("cc")),
        _fold(d.get("bcc")),
        _fold(d.get("subject")),
        p.sent_day,
        *sortkeys.of(p, data),
    )


__all__ = [
    "COLUMNS",
    "HEADER_COLUMNS",
    "NO_DATA",
    "SEARCH_COLUMNS",
    "SORT_COLUMNS",
    "SearchData",
    "of",
]
