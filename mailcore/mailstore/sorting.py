"""SORT (RFC 5256 §3) and SORT=DISPLAY (RFC 5957 §3) as one SQL ``ORDER BY`` over the
sort-key columns filled when a message is stored (mailcore.mailstore.sortkeys): nothing
is parsed at query time."""

from __future__ import annotations

from collections.abc import Sequence

# RFC 5256 §3 / RFC 5957 §3 sort key -> column of ``messages``
COLUMNS = {
    "ARRIVAL": "internal_date",
    "CC": "k_cc",
    "DATE": "sent_at",  # the Date header, else the internal date (§2.2)
    "FROM": "k_from",
    "SIZE": "size",
    "SUBJECT": "k_subject",  # the base subject (§2.1)
    "TO": "k_to",
    "DISPLAYFROM": "k_dfrom",  # RFC 5957
    "DISPLAYTO": "k_dto",
}


def order_by(criteria: Sequence[tuple[str, bool]]) -> str:
    """``criteria`` as (key, reverse) pairs -> ORDER BY text. RFC 5256 §3: messages
    equal under every key keep their mailbox order (ascending UID, never reversed)."""
    terms = []
    for name, reverse in criteria:
        column = COLUMNS[name]  # KeyError: the parser admits only these names
        terms.append(f"{column} DESC" if reverse else column)
    terms.append("uid")
    return ", ".join(terms)


__all__ = ["COLUMNS", "order_by"]
