"""RETURN options of SEARCH and SORT (RFC 4731 §3.1, RFC 5267 §3.2 and §4, RFC 9394 §3):
pure parsing for :mod:`services.store.imap.parser` and :mod:`parse_sort`."""

from __future__ import annotations

from services.store.imap.lexer import Cursor
from services.store.imap.partial import Range


def _nz(cur: Cursor) -> int:
    return cur.number(nonzero=True)


def partial_range(cur: Cursor) -> Range:
    """RFC 9394 §3: partial-range-first = nz-number ":" nz-number /
    partial-range-last = MINUS nz-number ":" MINUS nz-number"""
    if cur.take(b"-"):
        a = _nz(cur)
        cur.expect(b":-")
        return -a, -_nz(cur)
    a = _nz(cur)
    cur.expect(b":")
    return a, _nz(cur)


def return_options(cur: Cursor, allowed: frozenset[str]) -> tuple[frozenset[str], Range | None]:
    """ "(" [return-opt *(SP return-opt)] ")": the options (upper-cased) and the PARTIAL
    range. ``()`` means ALL (RFC 4731 §3.1)."""
    cur.open()
    opts: set[str] = set()
    rng: Range | None = None
    if not cur.take(b")"):
        while True:
            word = cur.atom().upper()
            if word not in allowed:
                raise cur.error("unknown RETURN option")
            if word == "PARTIAL":
                if rng is not None:
                    raise cur.error("PARTIAL given twice")
                cur.sp()
                rng = partial_range(cur)
            opts.add(word)
            if not cur.take(b" "):
                break
        cur.expect(b")")
    cur.depth -= 1
    if "UPDATE" in opts and opts & {"MIN", "MAX", "PARTIAL"}:
        # RFC 5267 §4.2: updates keep a whole result (ALL / COUNT) current; this server
        # does not keep MIN, MAX or a PARTIAL page current
        raise cur.error("UPDATE goes with ALL or COUNT only")
    if "PARTIAL" in opts and "ALL" in opts:
        # RFC 9394 §3: PARTIAL returns a part of what ALL would; asking both is an error
        raise cur.error("PARTIAL and ALL are mutually exclusive")
    return frozenset(opts or {"ALL"}), rng


__all__ = ["partial_range", "return_options"]
