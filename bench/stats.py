"""Small statistics the report needs: medians of runs, percentiles of latencies, ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence


def median(values: Sequence[float]) -> float | None:
    """The median of the runs that produced a figure (None when none did)."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return None
    mid = len(xs) // 2
    if len(xs) % 2:
        return xs[mid]
    return (xs[mid - 1] + xs[mid]) / 2


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile (pct in 0..100), as numpy's default method."""
    xs = sorted(values)
    if not xs:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside 0..100")
    pos = (len(xs) - 1) * pct / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ratio(postern: float | None, peer: float | None, *, higher_is_better: bool) -> float | None:
    """How many times better Postern is than the peer (>1 = Postern better).

    For throughput that is postern/peer; for a latency or a duration it is peer/postern.
    """
    if postern is None or peer is None:
        return None
    num, den = (postern, peer) if higher_is_better else (peer, postern)
    if den <= 0:
        return None
    return num / den
