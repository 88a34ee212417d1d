"""PARTIAL ranges (RFC 9394 §3; RFC 5267 §4.4 for ESORT): which results of a SEARCH,
SORT or FETCH a client pages through. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

Range = tuple[int, int]  # as sent: both positive (1-based from the first result) or both
# negative (-1 is the last result); either order (RFC 9394 §3: 500:400 = 400:500)


def pick(results: Sequence[T], rng: Range) -> list[T]:
    """The results at the positions ``rng`` names; positions past the end name nothing."""
    a, b = sorted((abs(rng[0]), abs(rng[1])))
    n = len(results)
    if rng[0] > 0:
        return list(results[a - 1 : b])
    # -a is the a-th from the end: counting back from the last result
    lo, hi = max(n - b, 0), n - a + 1
    return list(results[lo:hi]) if hi > 0 else []


def text(rng: Range) -> bytes:
    """The range as echoed in the response: as the client sent it."""
    return b"%d:%d" % rng


__all__ = ["Range", "pick", "text"]
