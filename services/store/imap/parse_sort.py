"""SORT / THREAD command arguments (RFC 5256 §5, RFC 5957 §4, RFC 5267 §3.2): pure
parsing, used by the command table in :mod:`services.store.imap.parser`."""

from __future__ import annotations

from collections.abc import Callable

from services.store.imap import commands as c
from services.store.imap import parse_items as items
from services.store.imap.lexer import Cursor
from services.store.imap.parse_returns import return_options

# RFC 5256 §5 sort-key, with RFC 5957 §4 DISPLAYFROM / DISPLAYTO
SORT_KEYS = frozenset(
    ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")
)
THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")  # RFC 5256 §4
# RFC 5267 §3.2 ESORT: sort-return-opt, as RFC 4731 search-return-opt
# and RFC 5267 §4.4 / RFC 9394 PARTIAL
# and RFC 5267 §4 CONTEXT=SORT's UPDATE and CONTEXT
SORT_RETURNS = frozenset(("MIN", "MAX", "ALL", "COUNT", "PARTIAL", "UPDATE", "CONTEXT"))


def _criteria(cur: Cursor) -> tuple[tuple[str, bool], ...]:
    """sort-criteria = "(" sort-criterion *(SP sort-criterion) ")" """
    cur.open()
    out: list[tuple[str, bool]] = []
    while True:
        word = cur.atom().upper()
        reverse = word == "REVERSE"
        if reverse:
            cur.sp()
            word = cur.atom().upper()
        if word not in SORT_KEYS:
            raise cur.error("unknown sort key")
        out.append((word, reverse))
        if not cur.take(b" "):
            break
    cur.expect(b")")
    cur.depth -= 1
    return tuple(out)


def _search_criteria(cur: Cursor) -> tuple[str, c.SearchKey]:
    """search-criteria = charset 1*(SP search-key) (the charset is not optional)."""
    charset = cur.astr().upper()
    cur.sp()
    return charset, items.SearchParser(cur, charset).keys()


def sort(uid: bool) -> Callable[[Cursor], c.Args]:
    def sub(cur: Cursor) -> c.Args:
        cur.sp()
        returns = partial = None
        if cur.take_word(b"RETURN "):  # RFC 5267 §3.2 ESORT
            returns, partial = return_options(cur, SORT_RETURNS)
            cur.sp()
        keys = _criteria(cur)
        cur.sp()
        charset, key = _search_criteria(cur)
        return c.Sort(uid, keys, key, charset, returns, partial)

    return sub


def thread(uid: bool) -> Callable[[Cursor], c.Args]:
    def sub(cur: Cursor) -> c.Args:
        cur.sp()
        algorithm = cur.atom().upper()
        if algorithm not in THREAD_ALGORITHMS:
            raise cur.error("unknown threading algorithm")
        cur.sp()
        charset, key = _search_criteria(cur)
        return c.Thread(uid, algorithm, key, charset)

    return sub


__all__ = ["SORT_KEYS", "THREAD_ALGORITHMS", "sort", "thread"]
